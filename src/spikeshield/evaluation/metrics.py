"""Robustness metrics beyond accuracy: QTE (quantified trade-off evaluation, RSC-SNN, METHODS 4).

QTE summarises how much accuracy a model keeps between two perturbation budgets as the area of one trapezoid,

    QTE = |(eta_b - eta_a) * (A(eta_b) + A(eta_a)) / 2|

with the budget ``eta`` in units of 1/255 and the accuracy ``A`` as a fraction. F-QTE uses the clean point
(eta = 0) and FGSM at eta = 8, P-QTE the same with PGD. With these units the formula reproduces every row of the
paper's tables, e.g. clean 0.9095, FGSM 0.1089 -> 8 * (0.9095 + 0.1089) / 2 = 4.07 (Table 3, CIFAR10 ANN).

With more than two points (an eps sweep) :func:`qte` is the trapezoid rule over the points sorted by eta: the area
under the accuracy-budget curve. This multi-point version is spikeshield's generalisation, not the paper's metric;
for two points it is the paper's formula.

>>> round(qte([(0, 0.9095), (8, 0.1089)]), 2)
4.07
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = ["qte", "qte_from_result"]


def qte(points: Iterable[tuple[float, float]]) -> float:
    """QTE of ``(eta, accuracy)`` points: the trapezoid area under the accuracy curve (METHODS 4).

    Args:
        points: ``(eta, A)`` pairs with ``eta >= 0`` in units of 1/255 (8 means eps = 8/255) and ``A`` the accuracy
            as a fraction in [0, 1]. At least two points, with distinct ``eta``; their order does not matter.

    Returns:
        For two points the paper's ``|(eta_b - eta_a) (A_b + A_a) / 2|``; for more, the sum of these trapezoids
        over consecutive points sorted by ``eta`` (spikeshield's generalisation to a sweep).

    Raises:
        ValueError: fewer than two points, a point that is not a pair of finite numbers, a negative ``eta``,
            an accuracy outside [0, 1] (e.g. a percentage), or a repeated ``eta``.

    >>> round(qte([(0, 0.8029), (8, 0.3728)]), 2)   # P-QTE check from the paper
    4.7
    >>> qte([(0, 1.0), (4, 0.5), (8, 0.0)])         # 4 * 1.5 / 2 + 4 * 0.5 / 2
    4.0
    """
    pts = [_point(p, i) for i, p in enumerate(points)]
    if len(pts) < 2:
        raise ValueError(f"QTE needs at least two (eta, accuracy) points, e.g. [(0, clean_acc), (8, pgd_acc)]; "
                         f"got {len(pts)}")
    pts.sort(key=lambda p: p[0])
    for (e0, _), (e1, _) in zip(pts, pts[1:], strict=False):
        if e1 == e0:
            raise ValueError(f"QTE points must have distinct eta; eta = {e0:g} appears more than once")
    return abs(sum((e1 - e0) * (a1 + a0) / 2 for (e0, a0), (e1, a1) in zip(pts, pts[1:], strict=False)))


def _point(p: Any, i: int) -> tuple[float, float]:
    """Check one ``(eta, accuracy)`` pair and return it as floats."""
    try:
        eta, acc = p
        eta, acc = float(eta), float(acc)
    except (TypeError, ValueError):
        raise ValueError(f"QTE point {i} must be an (eta, accuracy) pair of numbers; got {p!r}") from None
    if not (math.isfinite(eta) and math.isfinite(acc)):
        raise ValueError(f"QTE point {i} has a non-finite value: {p!r}")
    if eta < 0:
        raise ValueError(f"QTE point {i}: eta must be >= 0 (units of 1/255, e.g. 8 for eps = 8/255); got {eta:g}")
    if not 0.0 <= acc <= 1.0:
        hint = ": pass accuracies as fractions (divide percentages by 100)" if 1.0 < acc <= 100.0 else ""
        raise ValueError(f"QTE point {i}: accuracy must lie in [0, 1]; got {acc:g}{hint}")
    return eta, acc


def qte_from_result(result: Any, attack: str) -> float:
    """Two-point QTE of one evaluation: clean accuracy at eta = 0 and ``attack``'s robust accuracy at its eps.

    ``result`` is an :class:`~spikeshield.evaluation.EvalResult`; its ``eps`` (pixel units) is converted to units
    of 1/255. ``attack`` names a key of ``result.robust_acc`` (e.g. ``"fgsm"`` for F-QTE, ``"pgd7"`` for P-QTE);
    a prefix that matches exactly one key also works (``"pgd"``). The robust accuracy counts a sample only if it
    is correct clean and after the attack, so it never exceeds the clean accuracy.

    >>> result = evaluate(model, x, y, attacks="fgsm,pgd7", eps=8/255)          # doctest: +SKIP
    >>> f_qte, p_qte = qte_from_result(result, "fgsm"), qte_from_result(result, "pgd")   # doctest: +SKIP
    """
    robust = dict(result.robust_acc)
    key = _find_attack(attack, robust)
    eta = round(float(result.eps) * 255, 9)
    if eta <= 0:
        raise ValueError(f"the result's eps is {result.eps}: QTE needs an attack at eps > 0")
    return qte([(0.0, result.clean_acc), (eta, robust[key])])


def _find_attack(attack: str, names: dict[str, Any]) -> str:
    """Resolve ``attack`` to a key of ``names``: exact (case-insensitive) match, else a unique prefix."""
    if not isinstance(attack, str):
        raise TypeError(f"attack must be a name such as 'pgd7'; got {type(attack).__name__}")
    wanted = attack.strip().lower()
    lower = {k.lower(): k for k in names}
    if wanted in lower:
        return lower[wanted]
    starts = [k for k in names if k.lower().startswith(wanted)] if wanted else []
    if len(starts) == 1:
        return starts[0]
    what = f"matches several attacks ({', '.join(starts)})" if starts else "is not among the result's attacks"
    raise ValueError(f"attack {attack!r} {what}; choose one of: {', '.join(names) or '(none)'}")
