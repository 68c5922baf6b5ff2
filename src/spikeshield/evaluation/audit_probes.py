"""Audit probes on the model itself: randomness, hidden state and zero gradients (no attack is run)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from spikeshield.attacks.losses import cw_loss
from spikeshield.evaluation.flags import (
    OUTPUT_ATOL,
    OUTPUT_RTOL,
    PROBE_SIZE,
    STOCHASTIC_CALLS,
    ZERO_GRAD_SHARE,
    _ev,
    _json_safe,
    _skipped,
)


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
        g = _input_grad(model, x[sel], y[sel], cw_loss)  # its logit gradient is never zero
        saturated += int((torch.isfinite(g).all(1) & (g != 0).any(1)).sum())
    share = float((zero | bad).float().mean())
    raised = share > ZERO_GRAD_SHARE
    reason = (f"{int(zero.sum())} zero and {int(bad.sum())} non-finite cross-entropy input gradients out of {n} "
              f"({100 * share:.1f}%, threshold {100 * ZERO_GRAD_SHARE:.0f}%)")
    if saturated:
        reason += f"; {saturated} of the zero ones have a non-zero margin gradient (saturated softmax)"
    return _ev(raised, reason, share_zero_or_nonfinite=share, n_zero=int(zero.sum()), n_nonfinite=int(bad.sum()),
               n_saturated_softmax=saturated, median_gradient_l1=float(norms.median()), threshold=ZERO_GRAD_SHARE)
