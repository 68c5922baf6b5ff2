"""Gradient-obfuscation audit: the Athalye et al. (ICML 2018) checklist plus SNN-specific checks (METHODS 5).

A robust-accuracy number is only as good as the attack behind it. :func:`audit` runs the checks that expose an attack
failing for the wrong reason (randomness, masked or absent gradients, hidden state, a broken eps handling) and
returns an :class:`AuditReport`: which flags were raised and, for every check, raised or not, the numbers it looked
at. docs/flags.md explains each flag and what to do about it.

Each flag is raised only on evidence. The thresholds are the module constants below:

================================  =====================================================================================
flag                              raised when
================================  =====================================================================================
``stochastic``                    :data:`STOCHASTIC_CALLS` calls on the same images give logits that differ by more
                                  than ``OUTPUT_ATOL + OUTPUT_RTOL * max|logit|`` (and the variation is not the state
                                  leak below); the report also says whether ``model.is_stochastic`` agrees
``state_leak``                    with the random generator reset to the same seed before every call, the logits for
                                  a batch A differ between the first and the second call, or after a call on another
                                  batch B (A, A, B, A; :data:`PROBE_SIZE` images; same tolerance)
``zero_gradients``                the input gradient of the cross-entropy loss (the model's own backward) is exactly
                                  zero or not finite for more than :data:`ZERO_GRAD_SHARE` of the images
``single_step_beats_iterative``   FGSM leaves fewer points robust than the best iterative gradient attack by more
                                  than :data:`ACC_TOL` of the images and at least :data:`MIN_SAMPLES` images
``blackbox_beats_whitebox``       a black-box attack (Square with :data:`BLACKBOX_QUERIES` queries, a transfer
                                  attack from ``source``) beats the best white-box attack by the same margin
``eps_increase_no_effect``        the iterative attack's robust accuracy at :data:`EPS_FACTORS` x eps (a fixed step
                                  size scaled with eps) does not fall by that margin from eps to the largest budget
                                  (with at least :data:`MIN_SAMPLES` robust points at eps to lose), or rises by it
                                  between two consecutive budgets
``unbounded_not_successful``      PGD at eps = 1 (:data:`UNBOUNDED_STEPS` steps of :data:`UNBOUNDED_ALPHA`) fools less
                                  than :data:`UNBOUNDED_SUCCESS` of the clean-correct images
``random_beats_gradient``         random points of the eps-ball (``n_random`` per image: half uniform, half corners)
                                  fool images that every white-box attack left robust, more than :data:`ACC_TOL` of the
                                  images and at least :data:`MIN_SAMPLES`
``gradient_dependent``            spiking models only: the robust accuracy under :data:`GRADIENT_ATTACK` run through
                                  each backward pass of :data:`AUDIT_GRADIENTS` (the model's own surrogate, others,
                                  BPTR, RGA, the ANN twin) spreads by more than :data:`GRADIENT_SPREAD` (and at least
                                  :data:`MIN_SAMPLES` images) between the best and the worst mode
================================  =====================================================================================

A model that is stochastic (declared by ``model.is_stochastic`` or observed) is attacked with EOT: ``eot`` draws per
gradient, :data:`~spikeshield.evaluation.robustness.DEFAULT_EOT` unless given; the report records the number.

>>> report = audit(model, x, y, eps=8/255)      # doctest: +SKIP
>>> report.flags                                # e.g. {"zero_gradients", "random_beats_gradient"}   # doctest: +SKIP
>>> report.save_json("run/audit.json"); report.save_markdown("run/audit.md")            # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from spikeshield.attacks.base import Attack, check_labels
from spikeshield.attacks.fgsm import FGSM
from spikeshield.attacks.noise import GaussianNoise
from spikeshield.attacks.pgd import PGD
from spikeshield.attacks.registry import ATTACKS, gradient_label, make_attack, parse_attack_list, parse_gradient
from spikeshield.attacks.rfgsm import RFGSM
from spikeshield.attacks.transfer import Transfer
from spikeshield.evaluation.audit_report import AUDIT_SCHEMA, CHECKS, AuditReport
from spikeshield.evaluation.result import EvalResult, provenance
from spikeshield.evaluation.robustness import DEFAULT_EOT, _device_of, evaluate
from spikeshield.neurons.base import SpikingNeuron
from spikeshield.validation import check_eps

__all__ = ["ACC_TOL", "AUDIT_GRADIENTS", "AUDIT_SCHEMA", "BLACKBOX_QUERIES", "CHECKS", "DEFAULT_ATTACKS",
           "EPS_FACTORS", "GRADIENT_ATTACK", "GRADIENT_SPREAD", "MIN_SAMPLES", "N_RANDOM", "OUTPUT_ATOL", "OUTPUT_RTOL",
           "PROBE_SIZE", "RANDOM_CONFIRM_DRAWS", "STOCHASTIC_CALLS", "UNBOUNDED_ALPHA", "UNBOUNDED_STEPS",
           "UNBOUNDED_SUCCESS", "ZERO_GRAD_SHARE", "AuditReport", "audit", "flags_from_result"]

#: white-box attacks used when ``audit(attacks=None)``: one single-step and one iterative (registry names)
DEFAULT_ATTACKS = ("fgsm", "pgd20")
#: calls on the same images for the ``stochastic`` check
STOCHASTIC_CALLS = 3
#: two outputs "differ" when ``max|a - b| > OUTPUT_ATOL + OUTPUT_RTOL * max|a|`` (tolerates GPU non-determinism)
OUTPUT_ATOL = 1e-5
OUTPUT_RTOL = 1e-4
#: images per probe batch (A and B) of the ``stochastic`` and ``state_leak`` checks
PROBE_SIZE = 16
#: ``zero_gradients``: raised when more than this share of the images has a zero or non-finite input gradient
ZERO_GRAD_SHARE = 0.10
#: two attacks differ significantly when their robust counts differ by more than ``ACC_TOL * n`` images ...
ACC_TOL = 0.01
#: ... and by at least this many images
MIN_SAMPLES = 2
#: ``eps_increase_no_effect``: the budgets tried, as multiples of eps (those above 1 are dropped)
EPS_FACTORS = (1, 2, 4)
#: ``unbounded_not_successful``: raised when PGD at eps = 1 fools less than this share of the clean-correct images
UNBOUNDED_SUCCESS = 0.99
#: signed-gradient steps and step size of the unbounded PGD (no random start; any iterate that fools counts)
UNBOUNDED_STEPS = 50
UNBOUNDED_ALPHA = 0.05
#: random points per image for ``random_beats_gradient`` (half uniform in the ball, half its corners)
N_RANDOM = 32
#: stochastic models: a random point counts only if it fools a majority of this many fresh draws
RANDOM_CONFIRM_DRAWS = 5
#: query budget of a score-based black-box attack (``n_queries`` of Square)
BLACKBOX_QUERIES = 1000
#: ``gradient_dependent``: the backward passes the attack is run through (registry gradient spellings, as in
#: ``"pgd7@rga"``; METHODS 7): the model's own surrogate, narrow and wide surrogates, straight-through, BPTR, RGA and
#: the ANN twin (skipped for models that have none)
AUDIT_GRADIENTS = ("own", "triangle-0.5", "triangle-2", "rectangle-1", "straight_through", "bptr", "rga", "ann",
                   "hart", "pdsg", "assg")
#: ``gradient_dependent``: the cheap iterative attack run through every mode (registry name; at eps, with the audit's
#: EOT draws and seed, so every mode starts from the same random start)
GRADIENT_ATTACK = "pgd7"
#: ``gradient_dependent``: raised when the robust accuracy of the best and the worst mode differ by more than this
#: fraction of the images (10 points) and by at least :data:`MIN_SAMPLES` images
GRADIENT_SPREAD = 0.10

_SINGLE_STEP = (FGSM, RFGSM)
_SINGLE_STEP_NAMES = {"FGSM", "RFGSM"}
_BLACKBOX_NAMES = {"GaussianNoise", "Transfer", "Square"}


def _json_safe(value: Any) -> Any:
    """Evidence values as plain JSON types (tensors -> numbers, NaN / inf -> None)."""
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _ev(raised: bool, reason: str, **numbers: Any) -> dict[str, Any]:
    """One check's evidence record."""
    return _json_safe({"raised": bool(raised), "reason": reason, **numbers})


def _skipped(reason: str, enable: str = "-") -> dict[str, Any]:
    """The evidence of a check that could not run (``enable``: how to run it)."""
    return {"raised": False, "skipped": True, "reason": reason, "enable": enable}


def _significant(diff: int, n: int) -> bool:
    """``diff`` images out of ``n`` is more than the tolerance: > ACC_TOL * n and >= MIN_SAMPLES."""
    return diff >= MIN_SAMPLES and diff > ACC_TOL * n


# ---------------------------------------------------------------------------------------- checks on a result alone
def _kind(settings: Mapping[str, Any]) -> str:
    """``"single"``, ``"iterative"`` or ``"blackbox"`` for an attack's settings record."""
    cls = str(settings.get("attack", ""))
    if cls in _BLACKBOX_NAMES:
        return "blackbox"
    if cls in _SINGLE_STEP_NAMES:
        return "single"
    return "iterative"


def _attack_kind(attack: Attack) -> str:
    """``"single"``, ``"iterative"`` or ``"blackbox"`` for an attack instance."""
    if isinstance(attack, GaussianNoise | Transfer) or type(attack).__name__ in _BLACKBOX_NAMES:
        return "blackbox"
    if isinstance(attack, _SINGLE_STEP):
        return "single"
    return "iterative"


def _registry_base(name: str) -> str | None:
    """The registry entry of an attack name (``"pgd7@rga"`` -> ``"pgd7"``), or None if it is not a registry name."""
    base = name.partition("@")[0]
    return base if base in ATTACKS else None


def _single_step_check(counts: Mapping[str, int], kinds: Mapping[str, str], n: int) -> dict[str, Any]:
    """FGSM-like attacks against iterative ones, from robust counts per attack."""
    single = {a: c for a, c in counts.items() if kinds[a] == "single"}
    iterative = {a: c for a, c in counts.items() if kinds[a] == "iterative"}
    if not single or not iterative:
        missing = "a single-step attack (fgsm)" if not single else "an iterative gradient attack (pgd20, apgd-ce)"
        return _skipped(f"needs {missing}", f"add {missing.split('(')[1][:-1]} to the attacks")
    s_name = min(single, key=single.get)
    i_name = min(iterative, key=iterative.get)
    diff = iterative[i_name] - single[s_name]
    raised = _significant(diff, n)
    reason = (f"{s_name} leaves {single[s_name]}/{n} robust, {i_name} {iterative[i_name]}/{n}: "
              + ("the single-step attack is stronger" if raised else "the iterative attack is at least as strong "
                 "(within tolerance)"))
    return _ev(raised, reason, single_step=s_name, iterative=i_name, robust_single=single[s_name] / n,
               robust_iterative=iterative[i_name] / n, difference_images=diff, n=n)


def _blackbox_check(counts: Mapping[str, int], kinds: Mapping[str, str], n: int) -> dict[str, Any]:
    """Best black-box attack against the best white-box one, from robust counts per attack."""
    black = {a: c for a, c in counts.items() if kinds[a] == "blackbox"}
    white = {a: c for a, c in counts.items() if kinds[a] != "blackbox"}
    if not black or not white:
        missing = "a black-box attack (square, transfer)" if not black else "a white-box gradient attack"
        return _skipped(f"needs {missing}", "pass blackbox='square' (or source= for a transfer attack)")
    b_name = min(black, key=black.get)
    w_name = min(white, key=white.get)
    diff = white[w_name] - black[b_name]
    raised = _significant(diff, n)
    reason = (f"best black-box {b_name} leaves {black[b_name]}/{n} robust, best white-box {w_name} "
              f"{white[w_name]}/{n}: " + ("black-box is stronger" if raised else "white-box is at least as strong "
                                         "(within tolerance)"))
    return _ev(raised, reason, blackbox=b_name, whitebox=w_name, robust_blackbox=black[b_name] / n,
               robust_whitebox=white[w_name] / n, difference_images=diff, n=n)


def _spread_check(counts: Mapping[str, int], n: int, attack: str, **numbers: Any) -> dict[str, Any]:
    """Robust counts of one attack per gradient mode: raised when best and worst differ by > GRADIENT_SPREAD."""
    worst = min(counts, key=counts.get)
    best = max(counts, key=counts.get)
    diff = counts[best] - counts[worst]
    raised = diff > GRADIENT_SPREAD * n and diff >= MIN_SAMPLES
    if diff == 0:
        reason = f"{attack} leaves {counts[worst]}/{n} robust through each of the {len(counts)} gradient modes"
    else:
        reason = (f"{attack} leaves {counts[worst]}/{n} robust through {worst} and {counts[best]}/{n} through {best} "
                  f"({len(counts)} gradient modes): spread {100 * diff / n:.1f} points "
                  + (f"> {100 * GRADIENT_SPREAD:.0f}: robustness depends on the attacker's backward pass" if raised
                     else f"within the {100 * GRADIENT_SPREAD:.0f}-point threshold"))
    if raised and "own" in counts and counts["own"] > counts[worst]:
        reason += f"; the model's own gradient ({counts['own']}/{n}) over-estimates robustness"
    return _ev(raised, reason, attack=attack, **numbers, spread=diff / n, spread_images=diff,
               threshold=GRADIENT_SPREAD, worst=worst, best=best, n=n)


def _result_gradient_check(result: EvalResult, kinds: Mapping[str, str], n: int) -> dict[str, Any]:
    """Spread of robust accuracy over the ``attack@gradient`` entries of one base attack in an evaluation."""
    groups: dict[str, dict[str, int]] = {}
    suffixed: set[str] = set()
    for name, acc in result.robust_acc.items():
        if kinds.get(name, "blackbox") == "blackbox":
            continue
        base, at, suffix = name.partition("@")
        if at:
            suffixed.add(base)
            label = suffix
        else:
            try:
                label = gradient_label(result.attacks[name].get("grad"))
            except (TypeError, ValueError):
                label = str(result.attacks[name].get("grad"))
        count = round(acc * n)
        table = groups.setdefault(base, {})
        table[label] = min(count, table.get(label, count))
    groups = {base: table for base, table in groups.items() if base in suffixed and len(table) >= 2}
    if not groups:
        return _skipped("needs one attack under several gradients (attack@gradient names, e.g. pgd7@own and "
                        "pgd7@rga)", "evaluate adaptive_attacks(...), or run audit()")
    spreads = {base: max(t.values()) - min(t.values()) for base, t in groups.items()}
    base = max(spreads, key=spreads.get)
    ev = _spread_check(groups[base], n, base, robust_acc={k: c / n for k, c in groups[base].items()})
    if len(groups) > 1:
        ev["spread_by_attack"] = {b: d / n for b, d in spreads.items()}
    return ev


def _declared_stochastic(result: EvalResult, model: nn.Module | None) -> bool | None:
    """``model.is_stochastic``, or that of a model rebuilt from the result's config (None if unknown)."""
    if model is not None:
        return bool(getattr(model, "is_stochastic", False))
    try:
        from spikeshield.models import create_model

        return bool(create_model(**result.model).is_stochastic)
    except Exception:  # any config that does not rebuild: unknown
        return None


def flags_from_result(result: EvalResult, model: nn.Module | None = None, *,
                      all_checks: bool = False) -> dict[str, dict[str, Any]]:
    """The flags an evaluation shows on its own, without running anything: ``{flag: evidence}``.

    - ``single_step_beats_iterative`` when the result has a single-step (FGSM, R-FGSM) and an iterative gradient
      attack;
    - ``blackbox_beats_whitebox`` when it has a black-box attack (Square, Transfer, Gaussian noise) and a white-box
      one;
    - ``stochastic`` when the model is declared stochastic (``model.is_stochastic`` of ``model``, else of a model
      rebuilt from ``result.model``); the evidence says which EOT draws the gradient attacks used;
    - ``gradient_dependent`` when the result has one attack under several gradients (``pgd7@own``, ``pgd7@rga``,
      ...: :func:`~spikeshield.attacks.adaptive_attacks`; an unsuffixed entry counts under its ``grad`` setting):
      the spread of their robust accuracies (the base attack with the largest spread is reported).

    Thresholds as in :func:`audit`. Returns only the raised flags (so ``sorted(flags_from_result(r))`` is the list
    to store in ``result.flags``); ``all_checks=True`` returns every check that could be decided, raised or not.

    >>> result.flags = sorted(flags_from_result(result, model))   # doctest: +SKIP
    """
    n = int(result.n_examples)
    kinds = {name: _kind(settings) for name, settings in result.attacks.items()}
    counts = {name: round(acc * n) for name, acc in result.robust_acc.items() if name in kinds}
    if getattr(result, "cascade", False):
        why = "a cascade evaluation's per-attack accuracies are cumulative, so attacks cannot be compared"
        out = {k: _skipped(why, "evaluate with cascade=False, or run audit()")
               for k in ("single_step_beats_iterative", "blackbox_beats_whitebox", "gradient_dependent")}
    else:
        out = {"single_step_beats_iterative": _single_step_check(counts, kinds, n),
               "blackbox_beats_whitebox": _blackbox_check(counts, kinds, n),
               "gradient_dependent": _result_gradient_check(result, kinds, n)}
    declared = _declared_stochastic(result, model)
    if declared is None:
        out["stochastic"] = _skipped("cannot tell: the model config does not rebuild a model", "pass model=")
    else:
        eots = {name: int(s.get("eot", 1)) for name, s in result.attacks.items() if kinds[name] != "blackbox"}
        weak = sorted(name for name, e in eots.items() if e < 2)
        if declared:
            reason = ("model.is_stochastic is True: gradient attacks need EOT"
                      + (f"; {', '.join(weak)} used eot=1" if weak else f"; attacks used eot={eots}"))
        else:
            reason = "model.is_stochastic is False (not measured: run audit() to observe the outputs)"
        out["stochastic"] = _ev(declared, reason, declared=declared, eot=eots, attacks_without_eot=weak)
    out = {k: out[k] for k in CHECKS if k in out}
    if all_checks:
        return {k: v for k, v in out.items() if not v.get("skipped")}
    return {k: v for k, v in out.items() if v["raised"]}


# ------------------------------------------------------------------------------------------------------ the audit
def audit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 8 / 255,
    *,
    attacks: str | Sequence[str | Attack] | None = None,
    blackbox: str | None = "square",
    source: nn.Module | None = None,
    eot: int | None = None,
    n_random: int = N_RANDOM,
    seed: int = 0,
    progress: bool = True,
    batch_size: int = 256,
    n_queries: int = BLACKBOX_QUERIES,
    unbounded_steps: int = UNBOUNDED_STEPS,
    gradients: Sequence[str] | None = None,
    command: str | None = None,
) -> AuditReport:
    """Run the gradient-obfuscation checklist on ``model`` with images ``x`` and labels ``y``.

    Args:
        model: classifier on ``[B, C, H, W]`` images in [0, 1] (call ``model.eval()`` first); never modified.
        x: images ``[N, C, H, W]`` in [0, 1] (a few hundred are plenty; 32 already show gross problems).
        y: labels ``[N]``.
        eps: L-inf budget in pixel units (> 0).
        attacks: white-box attacks at ``eps``: registry names (list or ``"fgsm,pgd20"``) or :class:`Attack`
            instances with this eps; None: :data:`DEFAULT_ATTACKS`. At least one iterative gradient attack is
            needed; the first one given by name is also run at the larger budgets (``eps_increase_no_effect``).
        blackbox: registry name of a black-box attack (``"square"``, built with ``n_queries``; ``"gaussian"``),
            or None to skip it.
        source: a source model for a :class:`~spikeshield.attacks.Transfer` attack (the iterative attack crafted
            on it), added to the black-box attacks.
        eot: EOT draws per gradient for a stochastic model; None: :data:`DEFAULT_EOT` if the model is stochastic
            (declared or observed), else 1.
        n_random: random points per image for ``random_beats_gradient`` (0 skips the check).
        seed: the global torch RNG is seeded with it (as :func:`evaluate` does).
        progress: progress bars of the evaluations (stderr).
        batch_size: images per forward pass / attack call.
        n_queries: query budget of a score-based black-box attack.
        unbounded_steps: steps of the unbounded (eps = 1) PGD.
        gradients: backward passes for ``gradient_dependent`` (registry gradient spellings such as ``"own"``,
            ``"triangle-0.5"``, ``"rga"``, ``"ann"``); None: :data:`AUDIT_GRADIENTS`; an empty list skips the check.
        command: the command line, recorded in the report.

    Returns:
        :class:`AuditReport`.
    """
    eps = check_eps(eps)
    if eps == 0:
        raise ValueError("audit needs eps > 0 (pixel units, e.g. 8/255)")
    for value, name in ((batch_size, "batch_size"), (unbounded_steps, "unbounded_steps"), (n_queries, "n_queries")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 0:
        raise ValueError(f"n_random must be an integer >= 0; got {n_random!r}")
    if eot is not None and (isinstance(eot, bool) or not isinstance(eot, int) or eot < 1):
        raise ValueError(f"eot must be an integer >= 1 or None; got {eot!r}")
    modes = _gradient_labels(AUDIT_GRADIENTS if gradients is None else gradients)
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or x.dim() < 2 or y.shape != x.shape[:1]:
        raise ValueError("audit(model, x, y): x must be an image tensor [N, C, H, W] and y a label tensor [N]")
    if x.shape[0] == 0:
        raise ValueError("no examples to audit: x is empty")
    started = time.perf_counter()
    device = _device_of(model)
    x = x.to(device)
    classes = getattr(getattr(model, "info", None), "num_classes", None) or getattr(model, "num_classes", None)
    y = check_labels(y.to(device), x.shape[0], classes)
    n = x.shape[0]
    torch.manual_seed(seed)
    evidence: dict[str, dict[str, Any]] = {}

    # randomness and hidden state
    declared = bool(getattr(model, "is_stochastic", False))
    evidence["state_leak"], leak = _check_state_leak(model, x, seed, declared)
    evidence["stochastic"], observed = _check_stochastic(model, x, declared, leak)
    randomised = declared or observed
    eot = (DEFAULT_EOT if randomised else 1) if eot is None else eot
    evidence["stochastic"]["eot"] = eot
    if randomised:
        evidence["stochastic"]["reason"] += f"; gradient attacks used EOT with {eot} draws"
    evidence["zero_gradients"] = _check_zero_gradients(model, x, y, batch_size)

    # white-box and black-box attacks at eps: one evaluation, per-sample results
    white = _build_whitebox(model, attacks, eps, eot)
    black = _build_blackbox(model, blackbox, source, eps, n_queries, white)
    # cascade=False: every attack on every image, so each attack's own robust accuracy can be compared
    common = dict(batch_size=batch_size, seed=seed, progress=progress, eot=eot, cascade=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="the model is stochastic")  # eot chosen here, on observation
        result = evaluate(model, x, y, attacks=[*white, *black], eps=eps, **common)
    names = list(result.robust_acc)
    attack_objs = dict(zip(names, [*white, *black], strict=True))
    kinds = {name: _attack_kind(a) for name, a in attack_objs.items()}
    per = {k: torch.tensor(v, dtype=torch.bool) for k, v in (result.per_sample or {}).items()}
    clean = per["clean"]
    robust = {name: clean & per[name] for name in names}
    counts = {name: int(flag.sum()) for name, flag in robust.items()}
    survivors = clean.clone()
    for name in names:
        if kinds[name] != "blackbox":
            survivors &= robust[name]

    evidence["single_step_beats_iterative"] = _single_step_check(counts, kinds, n)
    bb = _blackbox_check(counts, kinds, n)
    if not bb.get("skipped"):
        bb["images_only_blackbox_fools"] = int((survivors & ~_all(robust, names, kinds, "blackbox")).sum())
    evidence["blackbox_beats_whitebox"] = bb

    evidence["eps_increase_no_effect"] = _check_eps_increase(model, x, y, eps, white, counts, common, n)
    evidence["unbounded_not_successful"] = _check_unbounded(model, x, y, clean.to(device), eot, unbounded_steps,
                                                            batch_size)
    evidence["random_beats_gradient"] = _check_random(model, x, y, eps, survivors.to(device), n_random, randomised,
                                                      batch_size, n)
    evidence["gradient_dependent"] = _check_gradient_modes(model, x, y, eps, modes, common, n)

    evidence = {k: evidence[k] for k in CHECKS}
    return AuditReport(
        flags={k for k, ev in evidence.items() if ev["raised"]},
        evidence=evidence,
        checks=[k for k, ev in evidence.items() if not ev.get("skipped")],
        model=result.model,
        dataset=result.dataset,
        eps=eps,
        n_examples=n,
        seed=int(seed),
        eot=eot,
        clean_acc=result.clean_acc,
        attacks=result.attacks,
        time_s=time.perf_counter() - started,
        **provenance(device),
        command=command,
    )


def _all(robust: dict[str, torch.Tensor], names: list[str], kinds: dict[str, str], kind: str) -> torch.Tensor:
    """Per-sample: robust to every attack of ``kind``."""
    out = torch.ones_like(next(iter(robust.values())))
    for name in names:
        if kinds[name] == kind:
            out &= robust[name]
    return out


# ------------------------------------------------------------------------------------------ randomness and state
def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).detach().float()


def _gap(a: torch.Tensor, b: torch.Tensor) -> tuple[float, bool]:
    """Largest absolute difference of two outputs and whether it exceeds the tolerance."""
    gap = (a - b).abs().max().item()
    return gap, not gap <= OUTPUT_ATOL + OUTPUT_RTOL * a.abs().max().item()


def _probes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Probe batches A and B (same size, different images where possible)."""
    k = min(PROBE_SIZE, x.shape[0])
    a = x[:k]
    if x.shape[0] >= 2 * k:
        b = x[k:2 * k]
    elif k > 1:
        b = a.roll(1, 0)
    else:
        b = 1 - a
    return a, b


def _check_state_leak(model: nn.Module, x: torch.Tensor, seed: int, declared: bool) -> tuple[dict[str, Any], bool]:
    """Calls A, A, B, A with the RNG reset to ``seed`` before each: a deterministic function gives A's logits thrice."""
    a, b = _probes(x)

    def call(inp: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(seed)
        return _outputs(model, inp)

    first, second = call(a), call(a)
    call(b)
    after_b = call(a)
    gap_repeat, differs_repeat = _gap(first, second)
    gap_after, differs_after = _gap(first, after_b)
    leak = differs_repeat or differs_after
    numbers = dict(probe_images=a.shape[0], max_gap_repeat=gap_repeat, max_gap_after_other_batch=gap_after)
    if leak and declared:
        return {**_skipped("cannot tell: the model is declared stochastic and its draws do not repeat under the same "
                           "seed (randomness outside the global torch generator?)"), **_json_safe(numbers)}, False
    if leak:
        where = "a second call" if differs_repeat else "a call on another batch"
        reason = (f"same input, same seed: the logits changed after {where} (max gap {max(gap_repeat, gap_after):.3g})"
                  f": state survives between calls (or randomness outside the global torch generator)")
    else:
        reason = "same input, same seed: identical logits on repeat and after another batch"
    return _ev(leak, reason, **numbers), leak


def _check_stochastic(model: nn.Module, x: torch.Tensor, declared: bool, leak: bool) -> tuple[dict[str, Any], bool]:
    """Repeated calls on the same images without re-seeding: do the logits vary?"""
    a, _ = _probes(x)
    outs = [_outputs(model, a) for _ in range(STOCHASTIC_CALLS)]
    gaps = [_gap(outs[0], o) for o in outs[1:]]
    varies = any(d for _, d in gaps)
    max_gap = max(g for g, _ in gaps)
    preds = torch.stack([o.argmax(1) for o in outs])
    flipped = (preds != preds[0]).any(0).float().mean().item()
    observed = varies and (declared or not leak)
    numbers = dict(calls=STOCHASTIC_CALLS, probe_images=a.shape[0], max_gap=max_gap, share_predictions_changed=flipped,
                   declared=declared, observed=observed, agree=declared == observed)
    if observed:
        reason = (f"{STOCHASTIC_CALLS} calls on the same images differ (max logit gap {max_gap:.3g}, "
                  f"{100 * flipped:.0f}% of predictions change)")
        if not declared:
            reason += "; model.is_stochastic is False, so evaluate() would not use EOT: declare it"
    elif varies:
        reason = "the logits vary between calls, but the state_leak check explains it (not counted as randomness)"
    else:
        reason = f"{STOCHASTIC_CALLS} calls on the same images give identical logits"
        if declared:
            reason += "; model.is_stochastic is True but no randomness was observed"
    return _ev(observed, reason, **numbers), observed


# -------------------------------------------------------------------------------------------------- gradients
def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample ``max_{j != y} z_j - z_y`` (its logit gradient is never zero)."""
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    return logits.scatter(1, y[:, None], float("-inf")).max(1).values - z_y


def _input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss) -> torch.Tensor:
    """Per-sample input gradient of ``loss(logits, y).sum()`` through the model's own backward."""
    xr = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(loss(model(xr), y).sum(), xr)
    return g.flatten(1)


def _check_zero_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> dict[str, Any]:
    """Share of images whose cross-entropy input gradient is exactly zero or not finite."""
    n = x.shape[0]
    zero = torch.zeros(n, dtype=torch.bool, device=x.device)
    bad = torch.zeros_like(zero)
    norms = torch.zeros(n, device=x.device)
    for i in range(0, n, batch_size):
        g = _input_grad(model, x[i:i + batch_size], y[i:i + batch_size],
                        lambda z, t: F.cross_entropy(z, t, reduction="none"))
        finite = torch.isfinite(g).all(1)
        bad[i:i + batch_size] = ~finite
        zero[i:i + batch_size] = finite & (g == 0).all(1)
        norms[i:i + batch_size] = torch.where(finite, g.abs().sum(1), torch.zeros_like(finite, dtype=g.dtype))
    saturated = 0
    idx = zero.nonzero().squeeze(1)  # zero CE gradient: a dead backward, or a softmax so confident it rounds to one?
    for i in range(0, idx.numel(), batch_size):
        sel = idx[i:i + batch_size]
        g = _input_grad(model, x[sel], y[sel], _margin)
        saturated += int((torch.isfinite(g).all(1) & (g != 0).any(1)).sum())
    share = float((zero | bad).float().mean())
    raised = share > ZERO_GRAD_SHARE
    reason = (f"{int(zero.sum())} zero and {int(bad.sum())} non-finite cross-entropy input gradients out of {n} "
              f"({100 * share:.1f}%, threshold {100 * ZERO_GRAD_SHARE:.0f}%)")
    if saturated:
        reason += f"; {saturated} of the zero ones have a non-zero margin gradient (saturated softmax)"
    return _ev(raised, reason, share_zero_or_nonfinite=share, n_zero=int(zero.sum()), n_nonfinite=int(bad.sum()),
               n_saturated_softmax=saturated, median_gradient_l1=float(norms.median()), threshold=ZERO_GRAD_SHARE)


# ---------------------------------------------------------------------------------------------------- attacks
def _build_whitebox(model: nn.Module, attacks, eps: float, eot: int) -> list[Attack]:
    """The white-box attacks at ``eps`` (names built with ``eot``); at least one iterative gradient attack."""
    if attacks is None:
        attacks = DEFAULT_ATTACKS
    if isinstance(attacks, str | Attack):
        attacks = [attacks] if isinstance(attacks, Attack) else parse_attack_list(attacks)
    built: list[Attack] = []
    for item in attacks:
        if isinstance(item, Attack):
            built.append(item)
        else:
            (key,) = parse_attack_list([item])
            built.append(make_attack(key, model, eps, eot=eot))
    if not any(_attack_kind(a) == "iterative" for a in built):
        raise ValueError("audit needs at least one iterative gradient attack among the attacks (e.g. 'pgd20' or "
                         "'apgd-ce')")
    return built


def _build_blackbox(model, blackbox: str | None, source, eps: float, n_queries: int,
                    white: list[Attack]) -> list[Attack]:
    """The black-box attacks (registry name with ``n_queries`` if it takes it; a transfer from ``source``)."""
    out: list[Attack] = []
    if blackbox is not None:
        (key,) = parse_attack_list([blackbox])
        params = inspect.signature(ATTACKS[_registry_base(key) or key].cls.__init__).parameters
        extra = {"n_queries": n_queries} if "n_queries" in params else {}
        attack = make_attack(key, model, eps, **extra)
        if _attack_kind(attack) != "blackbox":
            raise ValueError(f"blackbox={blackbox!r} is a white-box gradient attack; name a black-box one "
                             f"('square', 'gaussian') or None")
        out.append(attack)
    if source is not None:
        name = next((a.name for a in white if _attack_kind(a) == "iterative" and _registry_base(a.name)), "pgd20")
        source_eot = DEFAULT_EOT if getattr(source, "is_stochastic", False) else 1
        out.append(Transfer(model, eps, source=source, attack=name, eot=source_eot))
    return out


def _check_eps_increase(model, x, y, eps, white, counts, common, n) -> dict[str, Any]:
    """Robust accuracy of the iterative attack at EPS_FACTORS x eps: it must fall."""
    budgets = []
    for f in EPS_FACTORS:
        e = min(f * eps, 1.0)
        if not budgets or e > budgets[-1] + 1e-12:
            budgets.append(e)
    if len(budgets) < 2:
        return _skipped(f"eps = {eps:g} leaves no larger budget below 1", "audit at a smaller eps")
    name = next((a.name for a in white if _attack_kind(a) == "iterative" and _registry_base(a.name)), "pgd20")
    alpha = ATTACKS[_registry_base(name)].settings.get("alpha")  # a fixed step size is scaled with eps
    accs: list[int] = []
    for e in budgets:
        if abs(e - eps) < 1e-12 and name in counts:
            accs.append(counts[name])
            continue
        scaled = {} if alpha is None else {"alpha": min(1.0, alpha * e / eps)}
        attack = make_attack(name, model, e, eot=common["eot"], **scaled)
        result = evaluate(model, x, y, attacks=[attack], eps=e, **common)
        accs.append(round(result.robust_acc[attack.name] * n))
    drop = accs[0] - accs[-1]
    rises = [accs[i + 1] - accs[i] for i in range(len(accs) - 1)]
    rising = any(_significant(r, n) for r in rises)
    room = accs[0] >= MIN_SAMPLES
    no_drop = room and not _significant(drop, n)
    raised = rising or no_drop
    shown = ", ".join(f"{e * 255:.3g}/255: {a}/{n}" for e, a in zip(budgets, accs, strict=True))
    if rising:
        reason = f"{name} robust accuracy rises with eps ({shown})"
    elif no_drop:
        reason = f"{name} robust accuracy does not fall as eps grows ({shown})"
    elif not room:
        reason = f"nothing left to lose: {name} leaves {accs[0]}/{n} robust at eps ({shown})"
    else:
        reason = f"{name} robust accuracy falls with eps ({shown})"
    return _ev(raised, reason, attack=name, eps=budgets, robust_acc=[a / n for a in accs], drop_images=drop,
               alpha=None if alpha is None else [min(1.0, alpha * e / eps) for e in budgets])


def _check_unbounded(model, x, y, clean: torch.Tensor, eot: int, steps: int, batch_size: int) -> dict[str, Any]:
    """PGD at eps = 1 from the clean image: share of clean-correct images fooled by some iterate."""
    idx = clean.nonzero().squeeze(1)
    if idx.numel() == 0:
        return _skipped("no image is classified correctly clean", "audit images the model gets right")
    attack = PGD(model, 1.0, alpha=UNBOUNDED_ALPHA, steps=steps, random_start=False, eot=eot)
    fooled = torch.zeros(idx.numel(), dtype=torch.bool, device=x.device)
    used = 0
    with torch.enable_grad(), attack.gradient_context():
        for i in range(0, idx.numel(), batch_size):
            sel = idx[i:i + batch_size]
            xb, yb = x[sel], y[sel]
            x_adv, hit = xb.clone(), torch.zeros(sel.numel(), dtype=torch.bool, device=x.device)
            for step in range(steps):
                _, logits, grad = attack.objective_and_gradient(x_adv, yb)
                hit |= logits.argmax(1) != yb
                if hit.all():
                    break
                used = max(used, step + 1)
                x_adv = attack.project(x_adv + UNBOUNDED_ALPHA * grad.sign(), xb)
            hit |= _outputs(model, x_adv).argmax(1) != yb
            fooled[i:i + batch_size] = hit
    success = float(fooled.float().mean())
    raised = success < UNBOUNDED_SUCCESS
    reason = (f"PGD at eps = 1 ({steps} steps of {UNBOUNDED_ALPHA}) fools {int(fooled.sum())}/{idx.numel()} "
              f"clean-correct images ({100 * success:.1f}%, needs {100 * UNBOUNDED_SUCCESS:.0f}%)")
    return _ev(raised, reason, success_rate=success, n_fooled=int(fooled.sum()), n_clean_correct=idx.numel(),
               steps=steps, steps_used=used, alpha=UNBOUNDED_ALPHA, eot=eot, threshold=UNBOUNDED_SUCCESS)


def _check_random(model, x, y, eps, survivors: torch.Tensor, n_random: int, randomised: bool, batch_size: int,
                  n: int) -> dict[str, Any]:
    """Random points of the eps-ball around images every white-box attack left robust: do any fool the model?"""
    if n_random == 0:
        return _skipped("n_random = 0", "pass n_random > 0")
    idx = survivors.nonzero().squeeze(1)
    found = torch.zeros(idx.numel(), dtype=torch.bool, device=x.device)
    per_call = max(1, batch_size // n_random)
    n_uniform = (n_random + 1) // 2
    for i in range(0, idx.numel(), per_call):
        sel = idx[i:i + per_call]
        xb, yb = x[sel], y[sel]
        k = sel.numel()
        base = xb.unsqueeze(1).expand(k, n_random, *xb.shape[1:])
        u = torch.empty_like(base).uniform_(-1, 1)
        u[:, n_uniform:] = u[:, n_uniform:].sign()
        cand = (base + eps * u).clamp(0, 1).reshape(k * n_random, *xb.shape[1:])
        labels = yb.repeat_interleave(n_random)
        wrong = _outputs(model, cand).argmax(1) != labels
        if randomised and wrong.any():
            w = wrong.nonzero().squeeze(1)
            votes = sum((_outputs(model, cand[w]).argmax(1) != labels[w]).int() for _ in range(RANDOM_CONFIRM_DRAWS))
            wrong[w] = votes * 2 > RANDOM_CONFIRM_DRAWS
        found[i:i + per_call] = wrong.view(k, n_random).any(1)
    n_found = int(found.sum())
    raised = _significant(n_found, n)
    reason = (f"random search ({n_random} points per image) fooled {n_found} of the {idx.numel()} images that every "
              f"white-box attack left robust")
    if randomised:
        reason += f" (each confirmed on a majority of {RANDOM_CONFIRM_DRAWS} draws)"
    return _ev(raised, reason, n_random=n_random, n_survivors=idx.numel(), n_found=n_found, share_found=n_found / n,
               indices_found=idx[found].tolist()[:20])


# ---------------------------------------------------------------------------------------------- gradient modes
def _gradient_labels(gradients: str | Sequence[str]) -> list[str]:
    """Canonical gradient suffixes (``"Triangle:0.5"`` -> ``"triangle-0.5"``), in order, without repeats."""
    if isinstance(gradients, str):
        gradients = [g for g in gradients.split(",") if g.strip()]
    labels: list[str] = []
    for g in gradients:
        if not isinstance(g, str):
            raise TypeError(f"gradients are registry spellings such as 'rga' or 'triangle-0.5'; got {g!r}")
        label = parse_gradient(g)[0]
        if label not in labels:
            labels.append(label)
    return labels


def _has_spiking_neurons(model: nn.Module) -> bool:
    """Whether ``model`` contains spikeshield spiking neurons (the layers the gradient modes act on)."""
    modules = getattr(model, "modules", None)
    return callable(modules) and any(isinstance(m, SpikingNeuron) for m in modules())


def _check_gradient_modes(model, x, y, eps, modes: list[str], common: Mapping[str, Any], n: int) -> dict[str, Any]:
    """:data:`GRADIENT_ATTACK` through every gradient mode (same seed, same random start): does the robust accuracy
    depend on the backward pass? Modes that do not apply to the model are skipped with the reason."""
    if not _has_spiking_neurons(model):
        return {**_skipped("not applicable: the model has no spiking neurons (SpikingNeuron modules), so every "
                           "gradient mode is its own backward"), "applicable": False}
    if not modes:
        return _skipped("no gradient modes given (gradients=())", "pass gradients=None (AUDIT_GRADIENTS)")
    robust: dict[str, torch.Tensor] = {}
    skipped: dict[str, str] = {}
    for label in modes:
        try:
            attack = make_attack(f"{GRADIENT_ATTACK}@{label}", model, eps, eot=common["eot"])
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="the model is stochastic")
                result = evaluate(model, x, y, attacks=[attack], eps=eps, **common)
        except (NotImplementedError, ValueError) as e:  # e.g. "ann" without a create_model config; no rate params
            skipped[label] = str(e).splitlines()[0] if str(e) else type(e).__name__
            continue
        per = result.per_sample or {}
        robust[label] = torch.tensor(per["clean"], dtype=torch.bool) & torch.tensor(per[attack.name], dtype=torch.bool)
    table = {label: float(robust[label].float().mean()) if label in robust else None for label in modes}
    numbers = dict(robust_acc=table, skipped_modes=skipped, eot=common["eot"])
    if len(robust) < 2:
        return {**_skipped(f"needs at least two gradient modes that apply to the model; ran {sorted(robust)}, "
                           f"skipped {sorted(skipped)}", "pass gradients= with modes the model supports"),
                **_json_safe(numbers)}
    all_modes = torch.stack(list(robust.values())).all(0)
    return _spread_check({label: int(r.sum()) for label, r in robust.items()}, n, GRADIENT_ATTACK, **numbers,
                         robust_all_modes=float(all_modes.float().mean()))
