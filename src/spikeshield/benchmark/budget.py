"""A budget-aware protocol: measure every member once on held-out images, keep the members that break something
the ones before them did not, cheapest breaks first, and record why each dropped member was dropped (issue 22).

:func:`plan` runs every member (AutoAttack's and ``snn-adaptive``'s) on every pilot image - the full, unordered
protocol - and orders them greedily by new breaks per second: the member that fools the most pilot images nobody
chosen yet fooled, per second of its own cost, goes next; a member that fools no new pilot image is dropped, and the
plan records it (its breaks, its new breaks: 0, the pilot's size). :func:`pool` makes one plan from several models'
pilots, and :func:`verify` runs the full protocol and the planned cascade on other images and lists the images the
full one breaks and the plan misses.

:data:`PLAN` is the plan the board's budget presets run, as ``snn-adaptive`` members: the pooled plan of the shipped
FashionMNIST models recorded by ``benchmarks/protocol_budget.py`` in ``benchmarks/results/leaderboard/budget.json``
(with every dropped member's check and the verification), amended and verified again on new images in
``budget_round2.json``; a test keeps the code and the record equal. The pilot is never the scored
images (held-out training images); a member dropped on the pilot can still matter elsewhere, which is what
:func:`verify` measures.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spikeshield.attacks.base import Attack
from spikeshield.evaluation import evaluate

#: the budget protocol's members in the order they run (``snn-adaptive`` member names, tuned gradients without their
#: value): the pooled plan of benchmarks/results/leaderboard/budget.json, plus APGD-DLR (own surrogate) after that
#: record's verification missed an image only APGD-T and Square broke; ``plan.order`` of budget_round2.json, which
#: verifies this order on new images
PLAN: tuple[str, ...] = ("apgd-ce@ann", "sapgd@assg", "apgd-ce", "apgd-dlr")
#: the record whose check verified :data:`PLAN` (its ``pilots_from`` names round 1)
PLAN_RECORD = "benchmarks/results/leaderboard/budget_round2.json"


def members_of(model: nn.Module, eps: float, suites: list[Any]) -> list[Attack]:
    """The member attacks of ``suites`` (suite names or objects; a plain attack name or attack is its own member),
    identical ones once, in order."""
    from spikeshield.attacks.ensemble import Suite
    from spikeshield.attacks.registry import make_attack, make_suite, suite_version

    out: list[Attack] = []
    seen: list[tuple[str, Any, int]] = []
    for suite in suites:
        if isinstance(suite, str):
            suite = make_suite(suite, model, eps) if suite_version(suite) is not None else make_attack(suite, model,
                                                                                                         eps)
        attacks = suite.members.values() if isinstance(suite, Suite) else [suite]
        for attack in attacks:
            key = (attack.name, attack.settings(), id(attack.model))
            if key not in seen:
                seen.append(key)
                out.append(attack)
    return out


def _broken(result) -> dict[str, set[int]]:
    """Per attack column, the images it fools that are correct clean."""
    clean = result.per_sample["clean"]
    return {name: {i for i, (c, r) in enumerate(zip(clean, result.per_sample[name], strict=True)) if c and not r}
            for name in result.robust_acc}


def _greedy(broken: dict[str, set], seconds: dict[str, float], min_breaks: int) -> tuple[list[str], bool]:
    """Member names (in ``broken``'s order, the first the reference) ordered greedily by new breaks per second, those
    breaking nothing new left out; undecided (all kept, in order) when fewer than ``min_breaks`` items broke."""
    names = list(broken)
    if len(set().union(*broken.values())) < min_breaks:  # too few breaks to tell members apart
        return names, False
    chosen: list[str] = []
    covered: set = set()
    remaining = list(names)
    while remaining:
        best = max(remaining, key=lambda n: (len(broken[n] - covered) / seconds[n], -names.index(n)))
        if not broken[best] - covered:
            break
        chosen.append(best)
        covered |= broken[best]
        remaining.remove(best)
    if names[0] not in chosen:  # the reference attack stays, after the others
        chosen.append(names[0])
    return chosen, True


def _dropped(broken: dict[str, set], seconds: dict[str, float], chosen: list[str]) -> dict[str, dict[str, Any]]:
    """The check behind each member left out of ``chosen``: what it broke, how much of it was new, its seconds."""
    covered = set().union(*(broken[n] for n in chosen))
    return {n: {"breaks": len(broken[n]), "new_breaks": len(broken[n] - covered), "seconds": seconds[n]}
            for n in broken if n not in chosen}


def plan(model: nn.Module, x: torch.Tensor, y: torch.Tensor, members: list[Attack], eps: float,
         batch_size: int = 256, min_breaks: int = 5) -> dict[str, Any]:
    """Order ``members`` by new breaks per second on the pilot images ``x`` (every member on every image) and drop
    those that break nothing new; returns the plan (``order``, ``dropped`` with the check behind each, ``pilot``
    with every member's seconds and the pilot images it fooled).

    The first member (the own-surrogate APGD-CE of the suites, the cost reference) is always kept: last, if it
    brings nothing new. A pilot on which the members break fewer than ``min_breaks`` images in all decides
    nothing: every member is kept, in the given order, and ``decided`` is False."""
    full = evaluate(model, x, y, attacks=members, eps=eps, cascade=False, progress=False, batch_size=batch_size)
    names = list(full.robust_acc)
    by_name = dict(zip(names, members, strict=True))
    broken = _broken(full)
    seconds = {name: max(full.time_s[name], 1e-9) for name in names}
    chosen, decided = _greedy(broken, seconds, min_breaks)
    return {
        "order": chosen,
        "decided": decided,
        "dropped": {n: {**check, "pilot_n": len(y)} for n, check in _dropped(broken, seconds, chosen).items()},
        "attacks": {name: by_name[name] for name in chosen},
        "pilot": {"n": len(y), "clean_acc": full.clean_acc, "worst_case_acc": full.worst_case_acc,
                  "seconds": seconds, "breaks": {n: len(broken[n]) for n in names},
                  "broken": {n: sorted(broken[n]) for n in names},
                  "forward_passes": dict(full.number_forward_passes)},
    }


def pool(pilots: dict[str, dict[str, Any]], min_breaks: int = 5) -> dict[str, Any]:
    """One plan for several models from their :func:`plan` records: the same greedy order over the pooled pilot
    images (each model's images its own), every member's seconds summed over the models; a member is named as in
    a suite (a tuned gradient without its value: ``apgd-ce@hart``), and a dropped member's record says how many
    pooled images it fooled and that none was new."""
    names = [suite_name(n) for n in next(iter(pilots.values()))["pilot"]["seconds"]]
    broken: dict[str, set] = {n: set() for n in names}
    seconds = dict.fromkeys(names, 0.0)
    for model, record in pilots.items():
        for name, images in record["pilot"]["broken"].items():
            broken[suite_name(name)] |= {(model, i) for i in images}
            seconds[suite_name(name)] += record["pilot"]["seconds"][name]
    chosen, decided = _greedy(broken, seconds, min_breaks)
    return {"order": chosen, "decided": decided, "models": list(pilots),
            "pilot_n": sum(r["pilot"]["n"] for r in pilots.values()),
            "new_breaks_per_second": _rates(chosen, broken, seconds),
            "dropped": _dropped(broken, seconds, chosen)}


def _rates(order: list[str], broken: dict[str, set], seconds: dict[str, float]) -> dict[str, float]:
    """Each member's new breaks per second given the members before it in ``order``."""
    covered: set = set()
    out = {}
    for name in order:
        out[name] = len(broken[name] - covered) / seconds[name]
        covered |= broken[name]
    return out


def suite_name(name: str) -> str:
    """``apgd-ce@hart-0.5`` -> ``apgd-ce@hart``: a tuned gradient's member as a suite names it (tuned per model)."""
    from spikeshield.attacks.adaptive import TUNABLE

    base, _, grad = name.partition("@")
    tuned = [g for g in TUNABLE if grad.startswith(f"{g}-")]
    return f"{base}@{max(tuned, key=len)}" if tuned else name


def verify(model: nn.Module, x: torch.Tensor, y: torch.Tensor, members: list[Attack], fast: list[Attack],
           eps: float, batch_size: int = 256) -> dict[str, Any]:
    """The full, unordered protocol (``members``) and the planned cascade (``fast``) on the same images ``x`` (not
    the pilot's): the images the full protocol breaks and the plan misses with the full protocol's members that
    broke each (``missed_by``), the plan's per-image verdicts (``fast_robust``) and both costs."""
    full = evaluate(model, x, y, attacks=members, eps=eps, cascade=False, progress=False, batch_size=batch_size)
    planned = evaluate(model, x, y, attacks=fast, eps=eps, cascade=True, progress=False, batch_size=batch_size)
    missed = [i for i, (f, s) in enumerate(zip(full.per_sample["worst_case"], planned.per_sample["worst_case"],
                                               strict=True)) if s and not f]
    broken = _broken(full)
    return {"n": len(y), "full_worst_case_acc": full.worst_case_acc, "fast_worst_case_acc": planned.worst_case_acc,
            "missed": missed, "missed_by": {i: sorted(n for n, b in broken.items() if i in b) for i in missed},
            "fast_robust": list(planned.per_sample["worst_case"]),
            "full_seconds": full.time_s["total"], "fast_seconds": planned.time_s["total"],
            "full_forward_passes": full.number_forward_passes["total"],
            "fast_forward_passes": planned.number_forward_passes["total"]}
