"""Audit thresholds and the flags an evaluation shows on its own (:func:`flags_from_result`).

The module constants are the thresholds of every audit check (the table in :mod:`spikeshield.evaluation.audit`
says what each one controls). :func:`flags_from_result` decides the checks that need nothing but an
:class:`~spikeshield.evaluation.result.EvalResult`; :func:`spikeshield.evaluation.evaluate` calls it, so this module
must not import :mod:`spikeshield.evaluation.robustness`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from spikeshield import decision
from spikeshield.attacks.base import Attack
from spikeshield.attacks.fgsm import FGSM
from spikeshield.attacks.noise import GaussianNoise
from spikeshield.attacks.registry import ATTACKS, gradient_label
from spikeshield.attacks.rfgsm import RFGSM
from spikeshield.attacks.transfer import Transfer
from spikeshield.evaluation.audit_report import CHECKS
from spikeshield.evaluation.result import EvalResult

__all__ = ["ACC_TOL", "AUDIT_GRADIENTS", "BLACKBOX_QUERIES", "DEFAULT_ATTACKS", "EPS_FACTORS", "GRADIENT_ATTACK",
           "GRADIENT_SPREAD", "MIN_SAMPLES", "N_RANDOM", "OUTPUT_ATOL", "OUTPUT_RTOL", "PROBE_SIZE",
           "STOCHASTIC_CALLS", "UNBOUNDED_ALPHA", "UNBOUNDED_STEPS", "UNBOUNDED_SUCCESS",
           "ZERO_GRAD_SHARE", "flags_from_result"]

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
    """Whether the model is random: as the evaluation found it (declared or probed), ``model.is_stochastic``, or
    that of a model rebuilt from the result's config (None if unknown)."""
    if result.stochastic:
        return True
    if model is not None:
        return bool(decision.declared_stochastic(model))
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
            reason = ("the model is stochastic (declared or observed): gradient attacks need EOT"
                      + (f"; {', '.join(weak)} used eot=1" if weak else f"; attacks used eot={eots}"))
        else:
            reason = "model.is_stochastic is False (not measured: run audit() to observe the outputs)"
        out["stochastic"] = _ev(declared, reason, declared=declared, eot=eots, attacks_without_eot=weak)
    out = {k: out[k] for k in CHECKS if k in out}
    if all_checks:
        return {k: v for k, v in out.items() if not v.get("skipped")}
    return {k: v for k, v in out.items() if v["raised"]}
