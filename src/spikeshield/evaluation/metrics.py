"""Robustness metrics beyond accuracy: QTE (RSC-SNN, METHODS 4), AGCS (RandHet-SNN, METHODS 2), layer-wise errors.

- :func:`qte`, :func:`qte_from_result`: quantified trade-off evaluation (below).
- :func:`agcs`, :func:`perturbation_cosine`: how much two random draws of a (stochastic) model agree on the input
  gradient, and on the adversarial perturbation (METHODS 2).
- :func:`coding_cosine`: how alike two input codings are on average over time (RSC-SNN appendix B.3, METHODS 4).
- :func:`layer_errors`: per-neuron relative change of PSC or membrane traces between clean and adversarial input,
  one distribution per layer (HoSNN, METHODS 1).

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
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AGCSResult", "agcs", "coding_cosine", "layer_errors", "perturbation_cosine", "qte", "qte_from_result"]


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


def qte_at_8(eps: float, clean_acc: float, robust_acc: dict[str, float]) -> dict[str, float]:
    """``{attack: QTE}`` between the clean point and each attack's robust accuracy when ``eps`` is 8/255 (the
    paper's F-QTE / P-QTE budget); empty at any other budget."""
    if not math.isclose(eps * 255, 8, abs_tol=1e-6):
        return {}
    return {name: qte([(0.0, clean_acc), (8.0, acc)]) for name, acc in robust_acc.items()}


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


# ------------------------------------------------------------------------------------------------------------ AGCS
@dataclass
class AGCSResult:
    """Per-sample cosine similarities between two random draws, and their mean (METHODS 2).

    Attributes:
        mean: mean of the defined cosines (NaN if none is defined).
        cosines: ``[N]`` float64 tensor, one cosine per input in [-1, 1]; NaN where it is undefined because one of
            the two vectors is exactly zero (e.g. a dead network, or a zero perturbation).
        n: number of inputs with a defined cosine (those the mean is taken over).
        n_undefined: number of inputs whose cosine is NaN.
    """

    mean: float
    cosines: torch.Tensor
    n: int
    n_undefined: int = 0

    @classmethod
    def from_cosines(cls, cosines: torch.Tensor) -> AGCSResult:
        """Build the result from per-sample cosines (NaN = undefined)."""
        cosines = cosines.detach().to("cpu", torch.float64).reshape(-1)
        ok = ~torch.isnan(cosines)
        n = int(ok.sum())
        mean = float(cosines[ok].mean()) if n else math.nan
        return cls(mean=mean, cosines=cosines, n=n, n_undefined=int(cosines.numel() - n))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"mean", "n", "n_undefined", "cosines": [...]}`` (NaN written as None)."""
        return {"mean": None if math.isnan(self.mean) else self.mean, "n": self.n, "n_undefined": self.n_undefined,
                "cosines": [None if math.isnan(c) else c for c in self.cosines.tolist()]}


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample cosine of ``a`` and ``b`` ``[B, ...]`` in float64; NaN where either vector is exactly zero."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    na, nb = a.norm(dim=1), b.norm(dim=1)
    cos = (a * b).sum(1) / (na * nb).clamp_min(torch.finfo(torch.float64).tiny)
    cos = cos.clamp(-1.0, 1.0)
    return torch.where((na == 0) | (nb == 0), torch.full_like(cos, math.nan), cos)


def coding_cosine(x: torch.Tensor, a: Any = "poisson", b: Any = "rsc1-0.1", T: int = 8,
                  batch_size: int = 256) -> float:
    """The RSC-SNN paper's equivalence check of two input codings (appendix B.3): per image, the time mean of each
    coding's ``T`` frames, flattened; the cosine of the two; the mean over images.

    Args:
        x: images ``[N, C, H, W]`` in [0, 1].
        a, b: encoders, as names (``"poisson"``, ``"rsc1-0.1"``, ...) or :class:`~spikeshield.encoding.Encoder`
            instances; their frames are compared in pixel space (before any normalisation).
        T: time steps of each coding.
        batch_size: images per call.

    Returns:
        The mean cosine in [-1, 1]; 1 for identical time means. Each coding draws from the global torch RNG.

    >>> coding_cosine(x_test, "poisson", "rsc1-0.1", T=8)     # doctest: +SKIP
    """
    from spikeshield.encoding import Encoder, make_encoder

    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] == 0:
        raise ValueError("coding_cosine needs images [N, C, H, W] in [0, 1]")
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive integer; got {T!r}")
    a, b = (e if isinstance(e, Encoder) else make_encoder(e) for e in (a, b))
    total = 0.0
    with torch.no_grad():
        for chunk in x.detach().split(_check_batch_size(batch_size)):
            total += _cosine(a(chunk, T).mean(0), b(chunk, T).mean(0)).nan_to_num(0.0).sum().item()
    return total / x.shape[0]


def _check_xy(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a batch of images ``[N, ...]`` and labels ``[N]``; return them detached, labels as int64."""
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("x and y must be tensors (images [N, C, H, W] in [0, 1] and labels [N])")
    if x.dim() < 2 or y.dim() != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"need images [N, ...] and labels [N]; got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] == 0:
        raise ValueError("need at least one input")
    return x.detach(), y.detach().to(device=x.device, dtype=torch.long)


def _check_batch_size(batch_size: int) -> int:
    """A positive integer batch size."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    return batch_size


def _input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of the summed cross-entropy w.r.t. ``x`` (one forward/backward pass, one random draw)."""
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def agcs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 256,
    grad: Any = None,
) -> AGCSResult:
    """Average gradient cosine similarity (AGCS, RandHet-SNN; METHODS 2).

    Every input goes through two independent forward/backward passes (two random draws of a stochastic model);
    its score is the cosine of the two input gradients of the cross-entropy loss. AGCS is the mean over inputs.
    A deterministic model scores 1; values well below 1 mean a gradient from one draw says little about another
    (the attacker's problem that EOT addresses). The loss is summed over the batch, so each input's gradient is its
    own loss's gradient (exactly so in eval mode; batch norm in train mode couples the batch).

    The model's mode (train/eval) and parameters are left untouched; gradients come from
    :func:`torch.autograd.grad`, so no ``.grad`` is written.

    Args:
        model: classifier taking ``x`` to logits ``[B, classes]``.
        x: images ``[N, C, H, W]`` in [0, 1].
        y: labels ``[N]``.
        batch_size: inputs per forward pass.
        grad: the backward pass to take gradients through (as an attack's ``grad``); None: each
            neuron's own.

    Returns:
        An :class:`AGCSResult`; ``cosines`` is NaN (and left out of the mean) where a gradient is exactly zero.

    >>> res = agcs(model, x, y)        # doctest: +SKIP
    >>> res.mean, res.cosines.shape    # doctest: +SKIP
    (0.31, torch.Size([1000]))
    """
    from spikeshield.neurons.gradients import gradient_mode

    x, y = _check_xy(x, y)
    batch_size = _check_batch_size(batch_size)
    out = []
    with gradient_mode(grad), torch.enable_grad():
        for i in range(0, x.shape[0], batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            g1 = _input_gradient(model, xb, yb)
            g2 = _input_gradient(model, xb, yb)
            out.append(_cosine(g1, g2))
    return AGCSResult.from_cosines(torch.cat(out))


def perturbation_cosine(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Any = "pgd7",
    eps: float = 8 / 255,
    batch_size: int = 256,
    **attack_settings: Any,
) -> AGCSResult:
    """Cosine of the perturbations of two runs of the same attack, per input (RandHet-SNN; METHODS 2).

    The attack runs twice on every input; the two runs differ by their random start (PGD) and by the model's
    random draws (a stochastic model). Per input the score is the cosine of ``x_adv1 - x`` and ``x_adv2 - x``.
    A deterministic attack without random start (FGSM) on a deterministic model scores 1.

    Args:
        model: the classifier under attack; its mode and parameters are left as they are.
        x: images ``[N, C, H, W]`` in [0, 1].
        y: labels ``[N]``.
        attack: a registry name (``"pgd7"``, ``"fgsm"``, ...; built with :func:`~spikeshield.attacks.make_attack`
            at ``eps`` with ``attack_settings``) or a ready attack (any callable ``(x, y) -> x_adv``; then ``eps``
            and ``attack_settings`` are ignored).
        eps: budget in pixel units.
        batch_size: inputs per attack call.
        **attack_settings: overrides for the registry settings (e.g. ``eot=10``).

    Returns:
        An :class:`AGCSResult` of perturbation cosines; NaN (left out of the mean) where a perturbation is zero.

    >>> perturbation_cosine(model, x, y, "pgd7", eps=8/255).mean   # doctest: +SKIP
    """
    x, y = _check_xy(x, y)
    batch_size = _check_batch_size(batch_size)
    if isinstance(attack, str):
        from spikeshield.attacks import make_attack

        attack = make_attack(attack, model, eps, **attack_settings)
    elif not callable(attack):
        raise TypeError(f"attack must be a registry name such as 'pgd7' or an attack; got {type(attack).__name__}")
    out = []
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        d1 = attack(xb, yb).detach() - xb
        d2 = attack(xb, yb).detach() - xb
        out.append(_cosine(d1, d2))
    return AGCSResult.from_cosines(torch.cat(out))


# ---------------------------------------------------------------------------------------------- layer-wise error
TRACES = ("psc", "membrane", "spikes")


def layer_errors(
    model: nn.Module,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    trace: str = "psc",
    batch_size: int = 256,
    tiny: float = 1e-12,
    seed: int | None = 0,
) -> dict[str, torch.Tensor]:
    """Layer-wise relative error of neuron traces between clean and adversarial input (HoSNN; METHODS 1).

    Definition (METHODS 1 "inferred form"): for every sample ``b`` and every neuron ``i`` of a layer (one channel at
    one position for conv layers), with ``a[t]`` the trace on ``x`` and ``a'[t]`` on ``x_adv``,

        e_{b,i} = sum_t |a'_{b,i}[t] - a_{b,i}[t]|  /  (sum_t |a_{b,i}[t]| + tiny)

    i.e. the L1 norm over time of the change divided by the L1 norm over time of the clean trace. The values of all
    samples and neurons of a layer are flattened into one 1-D distribution (``N * neurons`` values). ``e = 0`` where
    the trace is unchanged; a neuron silent on ``x`` but active on ``x_adv`` gets a huge value (``~ 1 / tiny``):
    look at medians and quantiles, not means.

    The model runs without gradients and in its current mode. For a stochastic model the clean and adversarial
    passes of each batch use the same random draws (common random numbers, from ``seed``), so the error measures
    the perturbation and not the noise; ``seed=None`` draws them independently (and the global RNG is used as is).

    Args:
        model: a spikeshield model whose neurons/synapses emit traces (see :mod:`spikeshield.neurons.recording`).
        x: clean images ``[N, C, H, W]`` in [0, 1].
        x_adv: adversarial images, same shape.
        trace: ``"psc"`` (synapse outputs, incl. the input filter; the paper's metric), ``"membrane"`` (pre-reset
            membrane potentials of neuron layers) or ``"spikes"``.
        batch_size: inputs per forward pass.
        tiny: the denominator's guard.
        seed: seed of the shared random draws of each batch's two passes (None: independent draws).

    Returns:
        ``{layer name: 1-D float tensor of errors >= 0}``, layers in forward order, names as in
        ``model.named_modules()`` (e.g. ``"body.2.synapse"``).

    >>> errs = layer_errors(model, x, attack(x, y), trace="psc")   # doctest: +SKIP
    >>> {k: v.median().item() for k, v in errs.items()}            # doctest: +SKIP
    """
    from spikeshield.neurons.recording import record

    if trace not in TRACES:
        raise ValueError(f"trace must be one of {', '.join(TRACES)}; got {trace!r}")
    if not isinstance(x, torch.Tensor) or not isinstance(x_adv, torch.Tensor) or x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv must be tensors of the same shape; got "
                         f"{getattr(x, 'shape', type(x).__name__)} and {getattr(x_adv, 'shape', type(x_adv).__name__)}")
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"need a non-empty batch [N, C, H, W]; got {tuple(x.shape)}")
    batch_size = _check_batch_size(batch_size)
    x, x_adv = x.detach(), x_adv.detach().to(x.device)

    def traces(inp: torch.Tensor, batch: int) -> dict[str, torch.Tensor]:
        devices = [inp.device.index or 0] if inp.is_cuda else []
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed + batch)
            with record(model) as rec, torch.no_grad():
                model(inp)
        return dict(getattr(rec, trace))

    parts: dict[str, list[torch.Tensor]] = {}
    for k, i in enumerate(range(0, x.shape[0], batch_size)):
        clean, adv = traces(x[i:i + batch_size], k), traces(x_adv[i:i + batch_size], k)
        if not clean:
            raise ValueError(f"the model recorded no {trace!r} traces; is it a spikeshield SNN"
                             f"{' with PSC synapses' if trace == 'psc' else ''}?")
        for name, a in clean.items():
            a = a.float()
            diff = (adv[name].float() - a).abs().sum(0)          # [B, ...]: L1 over time
            err = diff / (a.abs().sum(0) + tiny)
            parts.setdefault(name, []).append(err.flatten().cpu())
    return {name: torch.cat(p) for name, p in parts.items()}
