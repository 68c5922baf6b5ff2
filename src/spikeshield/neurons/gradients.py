"""The attacker's choice of backward pass (DESIGN 6, METHODS 7).

Every neuron's spike goes through :func:`spike` or a neuron's own fused kernel, and both ask
:func:`active_surrogate` which ``dH/dv`` to use. A :func:`gradient_mode` context swaps it from outside, without
touching the forward pass or the weights, and restores the model's own surrogate when the context ends, even on an
exception.

The same context can instead hold a *rate-based backward mode* (:class:`BPTR`, :class:`RGA`): then
:meth:`SpikingNeuron.forward <spikeshield.neurons.base.SpikingNeuron.forward>` computes the layer's exact output
without a graph and attaches the mode's gradient from the neuron's input currents ``I[t]`` to its spikes ``s[t]``,
``dL/dI[t] = dL/ds[t] * factor`` (:meth:`BackwardMode.factor`), through the layer's PSC filter if it has one. The
forward, and so every prediction, stays bit-identical. One context variable holds the override, so exactly one
backward is active at a time. The ANN-twin gradient is a whole-model substitution, not a neuron mode: see
:func:`spikeshield.attacks.with_ann_gradients` (``Attack(..., surrogate="ann")``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import ClassVar

import torch

from spikeshield.neurons.surrogate import SURROGATES, Surrogate, make_surrogate
from spikeshield.validation import unknown_name


@dataclass(frozen=True)
class RateParameters:
    """What the rate-based modes need to know of a neuron: ``u[t] = decay u[t-1] (1 - s[t-1]) + input_scale I[t]``,
    ``s[t] = H(u[t] - theta)``.

    ``decay`` (lambda, 1 for integrate-and-fire) and ``theta`` may be floats or tensors broadcastable to one
    sample's activations (per-unit parameters).
    """

    decay: float | torch.Tensor
    theta: float | torch.Tensor
    input_scale: float | torch.Tensor = 1.0


@dataclass(frozen=True)
class BackwardMode:
    """A backward rule from a neuron layer's input currents ``I[t]`` to its spikes ``s[t]`` (METHODS 7).

    Subclasses set ``name`` and define :meth:`factor`.
    """

    name: ClassVar[str] = "mode"

    def factor(self, current: torch.Tensor, spikes: torch.Tensor, p: RateParameters) -> torch.Tensor:
        """The diagonal factor ``dL/dI[t] / dL/ds[t]``, broadcastable to ``[T, B, ...]``.

        ``current`` are the (detached) input currents ``[T, B, ...]``, ``spikes`` the exact spikes (bool).
        """
        raise NotImplementedError

    def __post_init__(self) -> None:
        for key, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"backward mode {self.name!r}: {key} must be > 0, got {value}")


@dataclass(frozen=True)
class BPTR(BackwardMode):
    """Backpropagation through rate (SNN-RAT's ``RateBp``): ``dL/dI[t] = dL/ds[t] * 1[mean_t s > 0]``."""

    name: ClassVar[str] = "bptr"

    def factor(self, current, spikes, p):  # noqa: D102
        return spikes.any(0, keepdim=True).to(current.dtype)


@dataclass(frozen=True)
class RGA(BackwardMode):
    """Rate gradient approximation (Bu et al., CVPR 2023): ``dL/dI[t] = dL/ds[t] * g(Ibar)``.

    ``Ibar = mean_t(c I[t]) / theta`` (``c`` the input scale) and, with ``lambda`` the leak:
    ``g = (1 - gamma + gamma lambda) / (lambda + 1)`` where ``1 - lambda <= Ibar <= 2``; ``g = gamma`` where
    ``0 <= Ibar < 1 - lambda``; 0 elsewhere. The first range wins at ``Ibar = 1 - lambda`` (the reference code
    adds both there); for integrate-and-fire (``lambda = 1``) the second range is empty and ``g = 1/2`` on
    ``[0, 2]``. The factor does not include the chain factor ``c / theta`` (as the reference, where both are 1).
    """

    name: ClassVar[str] = "rga"
    gamma: float = 0.2

    def factor(self, current, spikes, p):  # noqa: D102
        ibar = (current * p.input_scale).mean(0, keepdim=True) / p.theta
        lam = torch.as_tensor(p.decay, dtype=current.dtype, device=current.device)
        gamma = self.gamma
        high = (1 - gamma + gamma * lam) / (lam + 1)
        in_high = (ibar >= 1 - lam) & (ibar <= 2)
        in_low = (ibar >= 0) & (ibar < 1 - lam)
        zero = ibar.new_zeros(())
        return torch.where(in_high, high, torch.where(in_low, ibar.new_tensor(gamma), zero))


#: rate-based backward modes by name (``gradient_mode("rga")``)
BACKWARD_MODES: dict[str, type[BackwardMode]] = {"bptr": BPTR, "rga": RGA}

#: gradient names that are not neuron-level (handled by the attacks: the ANN twin)
MODEL_GRADIENTS: tuple[str, ...] = ("ann",)

Gradient = Surrogate | BackwardMode

_OVERRIDE: ContextVar[Gradient | None] = ContextVar("spikeshield_gradient_override", default=None)


def gradient_names() -> list[str]:
    """Every valid gradient name: ``own``, the surrogates, the rate modes and the model-level ``ann``."""
    return sorted(["own", *SURROGATES, *BACKWARD_MODES, *MODEL_GRADIENTS])


def make_gradient(spec: str | Gradient | dict | None, **params: float) -> Gradient | None:
    """A surrogate or a rate-based mode from a name, a ``{"name": ..., param: ...}`` dict or an instance.

    ``None`` and ``"own"`` give None (each neuron's own surrogate). Unknown names raise a ``ValueError`` listing
    the valid ones; ``"ann"`` raises one saying where the ANN-twin gradient lives.

    >>> make_gradient("rga")
    RGA(gamma=0.2)
    """
    if spec is None or spec == "own":
        return None
    if isinstance(spec, Surrogate | BackwardMode):
        return spec
    name = spec.get("name", "") if isinstance(spec, dict) else spec
    if not isinstance(name, str):
        raise TypeError(f"a gradient is a name, a dict with a 'name' or an instance; got {type(spec).__name__}")
    if name in MODEL_GRADIENTS:
        raise ValueError(f"{name!r} replaces the whole model's backward, not a neuron's: use Attack(..., "
                         f"surrogate={name!r}) or spikeshield.attacks.with_ann_gradients(model)")
    if name in BACKWARD_MODES:
        if isinstance(spec, dict):
            params = {**{k: v for k, v in spec.items() if k != "name"}, **params}
        try:
            return BACKWARD_MODES[name](**params)
        except TypeError:
            fields = list(BACKWARD_MODES[name].__dataclass_fields__)
            raise ValueError(f"backward mode {name!r} takes parameters {fields}; got {sorted(params)}") from None
    if name not in SURROGATES:
        raise unknown_name("surrogate or gradient mode", name, gradient_names())
    return make_surrogate(spec, **params)


def gradient_name(gradient: Gradient) -> str:
    """Registry name of a surrogate or mode instance."""
    if isinstance(gradient, BackwardMode):
        return gradient.name
    return next(name for name, cls in SURROGATES.items() if type(gradient) is cls)


@contextmanager
def gradient_mode(gradient: str | Gradient | dict | None, **params: float) -> Iterator[None]:
    """Within the block, every spiking neuron back-propagates through ``gradient`` instead of its own surrogate.

    ``gradient`` is a surrogate (``"triangle"``, ``"exponential"``, ...) or a rate-based mode (``"bptr"``,
    ``"rga"``); ``params`` its parameters. ``None`` (or ``"own"``) keeps each neuron's own surrogate. The forward
    is unchanged; the previous mode is restored when the block ends, also on an exception.

    >>> with gradient_mode("triangle", gamma=0.5):
    ...     loss = F.cross_entropy(model(x), y)   # doctest: +SKIP
    >>> with gradient_mode("rga"):
    ...     loss = F.cross_entropy(model(x), y)   # doctest: +SKIP
    """
    token = _OVERRIDE.set(make_gradient(gradient, **params))
    try:
        yield
    finally:
        _OVERRIDE.reset(token)


def active_surrogate(own: Surrogate) -> Surrogate:
    """The surrogate a neuron must use now: the attacker's surrogate if one is active, else its own."""
    override = _OVERRIDE.get()
    return override if isinstance(override, Surrogate) else own


def active_mode() -> BackwardMode | None:
    """The rate-based backward mode active now, or None (then neurons use their surrogate)."""
    override = _OVERRIDE.get()
    return override if isinstance(override, BackwardMode) else None


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
