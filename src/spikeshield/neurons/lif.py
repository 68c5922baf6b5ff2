"""Leaky integrate-and-fire neurons with hard reset (METHODS 0).

Decay form (STBP, SNN-RAT, HoSNN): ``u[t] = lambda u[t-1] (1 - s[t-1]) + I[t]``;
time-constant form (SpikingJelly): ``u[t] = u[t-1] + (I[t] - u[t-1]) / tau`` before the reset. Both are
``u[t] = lambda u[t-1] (1 - s[t-1]) + c I[t]`` with ``lambda = 1 - 1/tau_m`` and ``c = 1`` (decay) or
``1/tau_m`` (time constant); ``s[t] = H(u[t] - theta)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from spikeshield.neurons import lif_kernels, lif_triton
from spikeshield.neurons.base import SpikingNeuron
from spikeshield.neurons.gradients import RateParameters, spike
from spikeshield.neurons.surrogate import Sigmoid, Surrogate, make_surrogate
from spikeshield.neurons.synapse import PSC


@dataclass(frozen=True)
class LIFParameters:
    """LIF parameters.

    tau_m: membrane time constant in steps (``math.inf`` gives integrate-and-fire, lambda = 1);
    theta: firing threshold; form: ``"decay"`` or ``"tau"`` (see module docstring); surrogate: the backward of
    the spike; detach_reset: if True the reset term passes no gradient.
    """

    tau_m: float = 5.0
    theta: float = 1.0
    form: Literal["decay", "tau"] = "decay"
    surrogate: Surrogate = field(default_factory=Sigmoid)
    detach_reset: bool = False

    def __post_init__(self) -> None:
        if not self.tau_m >= 1:
            raise ValueError(f"LIF tau_m must be >= 1 time step (inf for integrate-and-fire); got {self.tau_m}")
        if self.form not in ("decay", "tau"):
            raise ValueError(f"LIF form must be 'decay' or 'tau'; got {self.form!r}")
        if self.form == "tau" and math.isinf(self.tau_m):
            raise ValueError("LIF form 'tau' needs a finite tau_m")
        object.__setattr__(self, "surrogate", make_surrogate(self.surrogate))

    @property
    def decay(self) -> float:
        """The leak factor lambda = 1 - 1/tau_m."""
        return 1.0 - 1.0 / self.tau_m

    @property
    def input_scale(self) -> float:
        """The factor c on the input current: 1 (decay form) or 1/tau_m (time-constant form)."""
        return 1.0 if self.form == "decay" else 1.0 / self.tau_m


def lif_step(
    current: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None, p: LIFParameters, surrogate: Surrogate
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """One LIF step: ``(I[t], (u[t-1], s[t-1]))`` -> ``(s[t], u[t] pre-reset, (u[t], s[t]))``."""
    u = p.input_scale * current
    if state is not None:
        u_prev, s_prev = state
        reset = s_prev.detach() if p.detach_reset else s_prev
        u = u + p.decay * u_prev * (1 - reset)
    s = spike(u - p.theta, surrogate)
    return s, u, (u, s)


class _FusedLIF(torch.autograd.Function):
    """All T steps of LIF (and its optional PSC filter) in one autograd node with a hand-written BPTT backward.

    Same forward and gradients as looping :func:`lif_step` under autograd and filtering with :class:`PSC`, several
    times faster. CPU tensors run the compiled kernels of :mod:`spikeshield.neurons.lif_kernels`, CUDA tensors the
    Triton kernels of :mod:`spikeshield.neurons.lif_triton` where Triton is installed; other devices and dtypes run
    :func:`_loop_forward` / :func:`_loop_backward`, a short PyTorch loop of in-place ops.
    """

    @staticmethod
    def forward(ctx, current: torch.Tensor, p: LIFParameters, surrogate: Surrogate, tau_s: float | None):  # noqa: D102
        ctx.p, ctx.surrogate, ctx.tau_s = p, surrogate, tau_s
        ctx.kernels = _kernels_for(current)
        ctx.set_materialize_grads(False)
        if ctx.kernels is not None:
            out, membrane = ctx.kernels.forward(current, p.decay, p.input_scale, p.theta, tau_s)
            ctx.save_for_backward(membrane)
        else:
            out, membrane, fired = _loop_forward(current, p, tau_s)
            ctx.save_for_backward(membrane, fired)
        ctx.mark_non_differentiable(membrane)
        return out, membrane

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor | None, _grad_membrane: None):  # noqa: D102
        if grad_out is None:
            return None, None, None, None
        p, surrogate, tau_s = ctx.p, ctx.surrogate, ctx.tau_s
        if ctx.kernels is not None:
            (membrane,) = ctx.saved_tensors
            grad = ctx.kernels.backward(grad_out, membrane, p.decay, p.input_scale, p.theta, p.detach_reset, tau_s,
                                        surrogate)
        else:
            grad = _loop_backward(grad_out, *ctx.saved_tensors, p, surrogate, tau_s)
        return grad, None, None, None


def _kernels_for(current: torch.Tensor):
    """The fused kernels' module for this tensor (Triton first: interpreted, it is how the tests reach it on a
    CPU), or None for the PyTorch loop."""
    if lif_triton.supported(current):
        return lif_triton
    return lif_kernels if lif_kernels.supported(current) else None


def _loop_forward(current: torch.Tensor, p: LIFParameters, tau_s: float | None):
    """``(output, pre-reset membrane, spike mask)``, all ``[T, ...]``, written in place step by step."""
    membrane = torch.empty_like(current)
    fired = torch.empty_like(current, dtype=torch.bool)
    out = torch.empty_like(current) if tau_s else None  # tau_s * PSC, scaled once at the end
    zero = current.new_zeros(())
    for t in range(current.shape[0]):
        u = membrane[t]
        if t == 0 or p.decay == 0:
            torch.mul(current[t], p.input_scale, out=u)
        else:
            torch.where(fired[t - 1], zero, membrane[t - 1], out=u)
            torch.add(current[t] if p.input_scale == 1 else current[t] * p.input_scale, u, alpha=p.decay, out=u)
        torch.gt(u, p.theta, out=fired[t])
        if out is not None:
            if t == 0:
                out[0].copy_(fired[0])
            else:
                torch.add(fired[t], out[t - 1], alpha=1 - 1 / tau_s, out=out[t])
    return (out.mul_(1 / tau_s) if out is not None else fired.to(current.dtype)), membrane, fired


def _loop_backward(grad_out, membrane, fired, p: LIFParameters, surrogate: Surrogate, tau_s: float | None):
    """Input-current gradient of :func:`_loop_forward`'s output: one reverse loop over time."""
    T = grad_out.shape[0]
    grad = torch.empty_like(grad_out)  # dL/du[t], scaled into dL/dI[t] at the end
    filtered = torch.empty_like(grad_out[0]) if tau_s else None  # tau_s * dL/ds[t] through the PSC filter
    zero = grad.new_zeros(())
    for t in range(T - 1, -1, -1):
        grad_s = grad_out[t]
        if filtered is not None:  # a[t] = sum_k<=t (1 - 1/tau_s)^(t-k) s[k] / tau_s
            if t == T - 1:
                filtered.copy_(grad_s)
            else:
                torch.add(grad_s, filtered, alpha=1 - 1 / tau_s, out=filtered)
            grad_s = filtered * (1 / tau_s)
        slope = surrogate.derivative(membrane[t] - p.theta)
        if t == T - 1 or p.decay == 0:
            torch.mul(grad_s, slope, out=grad[t])
            continue
        # u[t+1] = decay * u[t] * (1 - s[t]) + c I[t+1]
        carried = grad[t + 1] * p.decay
        if not p.detach_reset:
            grad_s = torch.addcmul(grad_s, carried, membrane[t], value=-1)
        torch.where(fired[t], zero, carried, out=carried)
        torch.addcmul(carried, grad_s, slope, out=grad[t])
    if p.input_scale != 1:
        grad.mul_(p.input_scale)
    return grad


class LIF(SpikingNeuron):
    """LIF neurons on ``[T, B, ...]`` input currents, optionally followed by a PSC filter; stateless between calls.

    >>> lif = LIF(LIFParameters(tau_m=5.0))
    >>> spikes = lif(torch.rand(5, 8, 100))   # [T, B, N] -> [T, B, N] of 0/1
    >>> psc = LIF(LIFParameters(), synapse=PSC(3.0))(torch.rand(5, 8, 100))   # filtered spikes
    """

    def __init__(self, p: LIFParameters | None = None, synapse: PSC | None = None) -> None:
        super().__init__(synapse)
        self.p = p if p is not None else LIFParameters()
        self.surrogate = self.p.surrogate

    def step(self, current, state, surrogate):
        """One step of :func:`lif_step`."""
        return lif_step(current, state, self.p, surrogate)

    def rate_parameters(self) -> RateParameters:
        """Leak ``lambda = 1 - 1/tau_m``, threshold and input scale ``c``, for the BPTR / RGA backward modes."""
        return RateParameters(decay=self.p.decay, theta=self.p.theta, input_scale=self.p.input_scale)

    def run(self, current: torch.Tensor, surrogate: Surrogate) -> tuple[torch.Tensor, torch.Tensor]:
        """All steps, and the synapse, in one fused autograd node (the fast default path)."""
        tau_s = self.synapse.tau_s if self.synapse is not None else None
        out, membrane = _FusedLIF.apply(current, self.p, surrogate, tau_s)
        self.record_fused(membrane, self.p.theta, out)
        return out, membrane

    def extra_repr(self) -> str:
        p = self.p
        return f"tau_m={p.tau_m}, theta={p.theta}, form={p.form}, surrogate={p.surrogate}"
