"""The attacker's choice of backward pass (DESIGN 6, METHODS 7).

Every neuron's spike goes through :func:`spike` or a neuron's own fused kernel, and both ask
:func:`active_surrogate` which ``dH/dv`` to use. A :func:`gradient_mode` context swaps it from outside, without
touching the forward pass or the weights, and restores the model's own surrogate when the context ends, even on an
exception. Modes beyond a surrogate swap (BPTR, RGA, HART, ...) plug in here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

from spikeshield.neurons.surrogate import Surrogate, make_surrogate

_OVERRIDE: ContextVar[Surrogate | None] = ContextVar("spikeshield_surrogate_override", default=None)


@contextmanager
def gradient_mode(surrogate: str | Surrogate | dict | None, **params: float) -> Iterator[None]:
    """Within the block, every spiking neuron back-propagates through ``surrogate`` instead of its own.

    ``None`` (or ``"own"``) keeps each neuron's own surrogate.

    >>> with gradient_mode("triangle", gamma=0.5):
    ...     loss = F.cross_entropy(model(x), y)   # doctest: +SKIP
    """
    chosen = None if surrogate in (None, "own") else make_surrogate(surrogate, **params)
    token = _OVERRIDE.set(chosen)
    try:
        yield
    finally:
        _OVERRIDE.reset(token)


def active_surrogate(own: Surrogate) -> Surrogate:
    """The surrogate a neuron must use now: the attacker's override if one is active, else its own."""
    return _OVERRIDE.get() or own


class _Spike(torch.autograd.Function):
    """Exact Heaviside forward (strict ``v > 0``), surrogate backward, in train and eval mode alike."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(v)
        ctx.surrogate = surrogate
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        (v,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(v), None


def spike(v: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
    """Spike where ``v = u - theta > 0``; the backward uses ``surrogate`` (or the attacker's override)."""
    return _Spike.apply(v, active_surrogate(surrogate))
