"""A budget-aware protocol: measure every member once on held-out images, keep the members that break something
the ones before them did not, cheapest breaks first, and record why each dropped member was dropped (issue 22).

:func:`plan` runs every member (AutoAttack's and ``snn-adaptive``'s) on every pilot image - the full, unordered
protocol - and orders them greedily by new breaks per second: the member that fools the most pilot images nobody
chosen yet fooled, per second of its own cost, goes next; a member that fools no new pilot image is dropped, and the
plan records it (its breaks, its new breaks: 0, the pilot's size). :func:`verify` runs the full protocol and the
planned cascade on other images and lists the images the full one breaks and the plan misses.

The pilot must not be the scored images (take held-out training images); a member dropped on the pilot can still
matter elsewhere, which is what :func:`verify` measures.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spikeshield.attacks.base import Attack
from spikeshield.evaluation import evaluate


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


def plan(model: nn.Module, x: torch.Tensor, y: torch.Tensor, members: list[Attack], eps: float,
         batch_size: int = 256, min_breaks: int = 5) -> dict[str, Any]:
    """Order ``members`` by new breaks per second on the pilot images ``x`` (every member on every image) and drop
    those that break nothing new; returns the plan (``order``, ``dropped`` with the check behind each, ``pilot``).

    The first member (the own-surrogate APGD-CE of the suites, the cost reference) is always kept: last, if it
    brings nothing new. A pilot on which the members break fewer than ``min_breaks`` images in all decides
    nothing: every member is kept, in the given order, and ``decided`` is False."""
    full = evaluate(model, x, y, attacks=members, eps=eps, cascade=False, progress=False, batch_size=batch_size)
    names = list(full.robust_acc)
    by_name = dict(zip(names, members, strict=True))
    broken = _broken(full)
    seconds = {name: max(full.time_s[name], 1e-9) for name in names}
    decided = len(set().union(*broken.values())) >= min_breaks  # else too few breaks to tell members apart
    chosen: list[str] = []
    covered: set[int] = set()
    remaining = list(names) if decided else []
    if not decided:
        chosen = list(names)
    while remaining:
        best = max(remaining, key=lambda n: (len(broken[n] - covered) / seconds[n], -names.index(n)))
        if not broken[best] - covered:
            break
        chosen.append(best)
        covered |= broken[best]
        remaining.remove(best)
    if names[0] in remaining:  # the reference attack stays, after the others
        chosen.append(names[0])
        remaining.remove(names[0])
    dropped = {name: {"breaks": len(broken[name]), "new_breaks": len(broken[name] - covered),
                      "seconds": seconds[name], "pilot_n": len(y)} for name in remaining}
    return {
        "order": chosen,
        "decided": decided,
        "dropped": dropped,
        "attacks": {name: by_name[name] for name in chosen},
        "pilot": {"n": len(y), "clean_acc": full.clean_acc, "worst_case_acc": full.worst_case_acc,
                  "seconds": {n: seconds[n] for n in names}, "breaks": {n: len(broken[n]) for n in names},
                  "forward_passes": dict(full.number_forward_passes)},
    }


def verify(model: nn.Module, x: torch.Tensor, y: torch.Tensor, members: list[Attack], planned: dict[str, Any],
           eps: float, batch_size: int = 256) -> dict[str, Any]:
    """The full, unordered protocol and the planned cascade on the same images ``x`` (not the pilot's): the images
    the full protocol breaks and the plan misses, the plan's per-image verdicts (``fast_robust``) and both costs."""
    full = evaluate(model, x, y, attacks=members, eps=eps, cascade=False, progress=False, batch_size=batch_size)
    fast = evaluate(model, x, y, attacks=list(planned["attacks"].values()), eps=eps, cascade=True, progress=False,
                    batch_size=batch_size)
    missed = [i for i, (f, s) in enumerate(zip(full.per_sample["worst_case"], fast.per_sample["worst_case"],
                                               strict=True)) if s and not f]
    return {"n": len(y), "full_worst_case_acc": full.worst_case_acc, "fast_worst_case_acc": fast.worst_case_acc,
            "missed": missed, "fast_robust": list(fast.per_sample["worst_case"]),
            "full_seconds": full.time_s["total"], "fast_seconds": fast.time_s["total"],
            "full_forward_passes": full.number_forward_passes["total"],
            "fast_forward_passes": fast.number_forward_passes["total"]}
