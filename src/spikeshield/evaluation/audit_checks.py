"""Audit checks that run attacks: the attacks at eps, larger budgets, unbounded PGD, random search, gradient modes."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from spikeshield import decision
from spikeshield.attacks.base import Attack
from spikeshield.attacks.pgd import PGD
from spikeshield.attacks.registry import ATTACKS, make_attack, parse_attack_list, parse_gradient
from spikeshield.attacks.transfer import Transfer
from spikeshield.evaluation.audit_probes import _outputs
from spikeshield.evaluation.flags import (
    DEFAULT_ATTACKS,
    EPS_FACTORS,
    GRADIENT_ATTACK,
    MIN_SAMPLES,
    UNBOUNDED_ALPHA,
    UNBOUNDED_SUCCESS,
    _attack_kind,
    _ev,
    _json_safe,
    _registry_base,
    _significant,
    _skipped,
    _spread_check,
)
from spikeshield.evaluation.robustness import DEFAULT_EOT, evaluate
from spikeshield.neurons.base import has_spiking_neurons


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

def _check_unbounded(model, x, y, clean: torch.Tensor, eot: int, steps: int, batch_size: int,
                     score_draws: int = 1) -> dict[str, Any]:
    """PGD at eps = 1 from the clean image: share of clean-correct images fooled by some iterate (an iterate fools
    when its EOT-averaged logits do, or the decision rule's majority over ``score_draws`` draws at the last one)."""
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
            hit |= ~decision.judge(model, x_adv, yb, score_draws)[0]
            fooled[i:i + batch_size] = hit
    success = float(fooled.float().mean())
    raised = success < UNBOUNDED_SUCCESS
    reason = (f"PGD at eps = 1 ({steps} steps of {UNBOUNDED_ALPHA}) fools {int(fooled.sum())}/{idx.numel()} "
              f"clean-correct images ({100 * success:.1f}%, needs {100 * UNBOUNDED_SUCCESS:.0f}%)")
    return _ev(raised, reason, success_rate=success, n_fooled=int(fooled.sum()), n_clean_correct=idx.numel(),
               steps=steps, steps_used=used, alpha=UNBOUNDED_ALPHA, eot=eot, threshold=UNBOUNDED_SUCCESS)

def _check_random(model, x, y, eps, survivors: torch.Tensor, n_random: int, score_draws: int, batch_size: int,
                  n: int) -> dict[str, Any]:
    """Random points of the eps-ball around images every white-box attack left robust: do any fool the model? On a
    random model (``score_draws > 1``) a point that fools one draw counts only if the decision rule (majority of
    ``score_draws`` fresh draws) agrees."""
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
        if score_draws > 1 and wrong.any():
            w = wrong.nonzero().squeeze(1)
            wrong[w] = ~decision.judge(model, cand[w], labels[w], score_draws)[0]
        found[i:i + per_call] = wrong.view(k, n_random).any(1)
    n_found = int(found.sum())
    raised = _significant(n_found, n)
    reason = (f"random search ({n_random} points per image) fooled {n_found} of the {idx.numel()} images that every "
              f"white-box attack left robust")
    if score_draws > 1:
        reason += f" (each confirmed by the majority of {score_draws} fresh draws)"
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

def _check_gradient_modes(model, x, y, eps, modes: list[str], common: Mapping[str, Any], n: int) -> dict[str, Any]:
    """:data:`GRADIENT_ATTACK` through every gradient mode (same seed, same random start): does the robust accuracy
    depend on the backward pass? Modes that do not apply to the model are skipped with the reason."""
    if not has_spiking_neurons(model):
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
