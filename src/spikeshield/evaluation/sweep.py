"""Accuracy against the perturbation budget: :func:`eps_sweep` runs :func:`evaluate` at each eps.

>>> sweep = eps_sweep(model, x, y, attacks="fgsm,pgd7", eps_list=(0, 2/255, 4/255, 8/255))   # doctest: +SKIP
>>> sweep.qte()                       # {"fgsm": ..., "pgd7": ...}: area under each curve     # doctest: +SKIP
>>> sweep.save_json("run/sweep.json"); sweep.plot("run/sweep.png")                          # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spikeshield.attacks.base import Attack
from spikeshield.attacks.registry import make_attack, parse_attack_list
from spikeshield.evaluation.metrics import _find_attack, qte
from spikeshield.evaluation.result import EvalResult, JsonRecord, record_fields
from spikeshield.evaluation.robustness import evaluate
from spikeshield.validation import check_eps

#: version of the JSON layout written by :meth:`SweepResult.to_dict`
SWEEP_SCHEMA = "spikeshield.sweep/1"

#: an attack for a sweep: a registry name, or a factory ``(model, eps) -> Attack`` called once per eps > 0
AttackLike = str | Callable[[nn.Module, float], Attack]


@dataclass
class SweepResult(JsonRecord):
    """The outcome of :func:`eps_sweep`: accuracy per attack at each perturbation budget.

    ``eps`` holds the budgets in pixel units, ascending (:attr:`eta` gives them in units of 1/255).
    ``robust_acc[a][i]`` is attack ``a``'s robust accuracy (correct clean and after the attack, a fraction) at
    ``eps[i]``; at eps = 0 it is the clean accuracy (no attack is run there). ``worst_case_acc[i]`` counts samples
    correct clean and under every attack at ``eps[i]``. ``clean_acc`` is the clean accuracy of the eps = 0 run (of
    the first run if the sweep has no eps = 0). ``stochastic``, ``score_draws`` (draws behind each verdict),
    ``eot`` (EOT draws of each attack) and ``threat_model`` record how the sweep was judged. ``results`` keeps the
    full :class:`EvalResult` of each eps (without per-sample flags), so one budget can be tabled or turned into a
    paper-style QTE with :func:`~spikeshield.evaluation.qte_from_result`.
    """

    model: dict[str, Any]
    dataset: str
    eps: list[float]
    attacks: list[str]
    clean_acc: float
    robust_acc: dict[str, list[float]]
    worst_case_acc: list[float]
    n_examples: int
    seed: int
    number_forward_passes: int
    time_s: float
    results: list[EvalResult] = field(default_factory=list, repr=False)
    stochastic: bool = False
    score_draws: int = 1
    eot: dict[str, int] = field(default_factory=dict)
    threat_model: str = "clamped"
    spikeshield_version: str = ""
    torch_version: str = ""
    device: str = "cpu"
    git_commit: str | None = None
    date: str = ""
    command: str | None = None

    @property
    def eta(self) -> list[float]:
        """The budgets in units of 1/255 (``eps * 255``, rounded to 9 decimals), as the papers write them."""
        return [round(e * 255, 9) for e in self.eps]

    def curve(self, attack: str) -> list[tuple[float, float]]:
        """``(eta, accuracy)`` points of one attack (name or unique prefix), ready for :func:`qte`."""
        key = _find_attack(attack, self.robust_acc)
        return list(zip(self.eta, self.robust_acc[key], strict=True))

    def qte(self, attack: str | None = None) -> float | dict[str, float]:
        """QTE over the sweep (trapezoid rule, eta in 1/255, accuracy as a fraction).

        With ``attack`` the value for that attack, else ``{attack: value}`` for all. Only a sweep of exactly
        eps = 0 and 8/255 gives the paper's two-point F-QTE / P-QTE; more points give the area under the whole
        curve (spikeshield's generalisation, see :mod:`spikeshield.evaluation.metrics`).
        """
        if attack is not None:
            return qte(self.curve(attack))
        return {name: qte(self.curve(name)) for name in self.robust_acc}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with ``"schema"``, the fields, the per-attack ``"qte"`` (derived) and ``"eta"``."""
        out: dict[str, Any] = {"schema": SWEEP_SCHEMA}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = [r.to_dict() for r in value] if f.name == "results" else value
        out["eta"] = self.eta
        out["qte"] = self.qte()
        return json.loads(json.dumps(out))  # deep copy, plain JSON types only

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepResult:
        """Rebuild a sweep from :meth:`to_dict` output (the derived ``eta`` and ``qte`` are recomputed)."""
        data = {k: v for k, v in data.items() if k not in ("eta", "qte")}
        data = record_fields(data, cls, SWEEP_SCHEMA, "sweep result")
        data["results"] = [EvalResult.from_dict(r) for r in data.get("results", [])]
        return cls(**data)

    def plot(self, path: str | os.PathLike, title: str | None = None,
             reference: Mapping[str, Sequence[tuple[float, float]]] | None = None) -> Path:
        """Plot accuracy (%) against eps (in 1/255) to a PNG; see :func:`spikeshield.report.plot_sweep`."""
        from spikeshield.report.plots import plot_sweep  # matplotlib only when plotting

        return plot_sweep(self, path, title=title, reference=reference)


def eps_sweep(
    model: nn.Module,
    x: torch.Tensor | Iterable[tuple[torch.Tensor, torch.Tensor]],
    y: torch.Tensor | None = None,
    attacks: str | Sequence[AttackLike] = ("fgsm", "pgd7"),
    eps_list: Sequence[float] = (0, 2 / 255, 4 / 255, 8 / 255, 16 / 255),
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = True,
    *,
    eot: int | None = None,
    grad: Any = None,
    clamp: bool = True,
    score_draws: int | None = None,
    n_examples: int | None = None,
    command: str | None = None,
) -> SweepResult:
    """Robust accuracy of ``model`` under each attack at each budget in ``eps_list``.

    For every eps > 0 this runs :func:`~spikeshield.evaluation.evaluate` with the attacks built at that eps; at
    eps = 0 it measures the clean accuracy only, which is also every attack's accuracy there.

    Args:
        model: classifier on ``[B, C, H, W]`` images in [0, 1] (call ``model.eval()`` first).
        x: images ``[N, C, H, W]`` (with labels ``y``) or a re-iterable of ``(x, y)`` batches such as a
            DataLoader (it is read once per eps; a one-shot generator is refused).
        y: labels for tensor input.
        attacks: registry names (a list or ``"fgsm,pgd7"``, gradient suffixes such as ``"pgd7@rga"`` included)
            or factories ``(model, eps) -> Attack`` (e.g. ``lambda m, e: make_attack("pgd7", m, e, steps=3)``); a
            factory's attacks get no ``eot``/``grad``/``clamp`` from here. Attacks are named as in :func:`evaluate`.
        eps_list: budgets in pixel units (each in [0, 1], at least two distinct values, one of them > 0); they
            are run and reported in ascending order.
        batch_size, seed, progress, eot, grad, clamp, score_draws, n_examples: as in :func:`evaluate` (``eot``,
            ``grad`` and ``clamp`` build the named attacks; ``score_draws`` and the decision rule judge every
            budget); each eps is evaluated with the same ``seed``, so random starts repeat across budgets.
        command: the command line, recorded in the result.

    Returns:
        :class:`SweepResult` (accuracies as fractions).

    >>> sweep = eps_sweep(model, x, y, attacks="fgsm,pgd7", eps_list=(0, 4/255, 8/255))   # doctest: +SKIP
    >>> sweep.plot("sweep.png")                                                             # doctest: +SKIP
    """
    eps_values = _check_eps_list(eps_list)
    factories = _attack_factories(attacks, eot=eot, grad=grad, clamp=clamp, score_draws=score_draws)
    if not isinstance(x, torch.Tensor) and iter(x) is x:
        raise ValueError("eps_sweep reads the data once per eps: pass a tensor, a list of batches or a DataLoader, "
                         "not a one-shot iterator or generator")
    common = dict(batch_size=batch_size, seed=seed, progress=progress, eot=eot, grad=grad, clamp=clamp,
                  score_draws=score_draws, n_examples=n_examples, command=command)
    results: list[EvalResult] = []
    for eps in eps_values:
        built = [] if eps == 0 else [make(model, eps) for make in factories]
        results.append(evaluate(model, x, y, attacks=built, eps=eps, **common))
    return _collect(results, eps_values, seed, command)


def _check_eps_list(eps_list: Sequence[float]) -> list[float]:
    """Validate the budgets and return them sorted ascending."""
    if isinstance(eps_list, str | bytes) or not isinstance(eps_list, Iterable):
        raise ValueError(f"eps_list must be a sequence of budgets in pixel units, e.g. (0, 4/255, 8/255); "
                         f"got {eps_list!r}")
    values = sorted(check_eps(e, "each eps in eps_list") for e in eps_list)
    for a, b in zip(values, values[1:], strict=False):
        if b - a < 1e-12:
            raise ValueError(f"eps_list has a repeated budget ({a:g}): give each eps once")
    if len(values) < 2 or values[-1] <= 0:
        raise ValueError(f"eps_list needs at least two budgets, one of them > 0 (e.g. (0, 8/255)); got {values}")
    return values


def _attack_factories(attacks: str | Sequence[AttackLike],
                      **options: Any) -> list[Callable[[nn.Module, float], Attack]]:
    """Registry names or factories -> factories ``(model, eps) -> Attack``; ``options`` (``eot``, ``grad``,
    ``clamp``, ``score_draws``) build the named ones (None values are left to the attack's defaults)."""
    options = {k: v for k, v in options.items() if v is not None}
    if isinstance(attacks, str):
        attacks = parse_attack_list(attacks)
    if isinstance(attacks, Attack) or not isinstance(attacks, Iterable):
        raise TypeError("attacks must be registry names or factories (model, eps) -> Attack: an Attack instance "
                        "has a fixed eps, so a sweep cannot reuse it")
    out: list[Callable[[nn.Module, float], Attack]] = []
    for item in attacks:
        if isinstance(item, str):
            (key,) = parse_attack_list([item])
            out.append(lambda model, eps, key=key: make_attack(key, model, eps, **options))
        elif isinstance(item, Attack):
            raise TypeError(f"attack {item.name!r} is an Attack instance with a fixed eps; pass its registry name "
                            f"or a factory such as lambda model, eps: {type(item).__name__}(model, eps, ...)")
        elif callable(item):
            out.append(item)
        else:
            raise TypeError(f"attacks must be registry names or factories (model, eps) -> Attack; got {item!r}")
    if not out:
        raise ValueError("eps_sweep needs at least one attack, e.g. attacks=('fgsm', 'pgd7')")
    return out


def _collect(results: list[EvalResult], eps_values: list[float], seed: int, command: str | None) -> SweepResult:
    """Turn one :class:`EvalResult` per eps into a :class:`SweepResult` (eps 0: every attack at clean accuracy)."""
    attacked = [r for r in results if r.robust_acc]
    names = list(attacked[0].robust_acc)
    for r in attacked:
        if list(r.robust_acc) != names:
            raise RuntimeError(f"the attacks' names changed across budgets ({names} vs {list(r.robust_acc)}): a "
                               f"factory must return the same attack at every eps")
    robust = {name: [r.robust_acc[name] if r.robust_acc else r.clean_acc for r in results] for name in names}
    first = results[0]
    for r in results:
        r.per_sample = None
    return SweepResult(
        model=first.model,
        dataset=first.dataset,
        eps=eps_values,
        attacks=names,
        clean_acc=first.clean_acc,
        robust_acc=robust,
        worst_case_acc=[r.worst_case_acc for r in results],
        n_examples=first.n_examples,
        seed=int(seed),
        number_forward_passes=sum(r.number_forward_passes["total"] for r in results),
        time_s=sum(r.time_s["total"] for r in results),
        results=results,
        stochastic=first.stochastic,
        score_draws=first.score_draws,
        eot={name: int(settings.get("eot", 1)) for name, settings in attacked[0].attacks.items()},
        threat_model=attacked[0].threat_model,
        spikeshield_version=first.spikeshield_version,
        torch_version=first.torch_version,
        device=first.device,
        git_commit=first.git_commit,
        date=results[-1].date,
        command=command,
    )
