"""Threshold-adapting LIF neurons (TA-LIF) of HoSNN, anchored to a Neural Dynamic Signature (METHODS 1).

Per step, with ``u[t]`` the pre-reset membrane of the LIF dynamics (:mod:`spikeshield.neurons.lif`)::

    u[t]     = lambda u[t-1] (1 - s[t-1]) + c I[t]
    theta[t] = theta[t-1] + theta_v * (u[t] - NDS[t])        theta[-1] = theta0
    s[t]     = H(u[t] - theta[t])

``theta_v`` is learnable, one per neuron (initialised to ``1 / tau_v``, kept ``>= 0`` by :meth:`TALIF.after_step`);
``NDS`` (``[T, *shape]``) is the mean pre-reset membrane of a trained LIF network on clean data, a frozen buffer.
``theta_v = 0`` is exactly LIF. The threshold is part of the autograd graph, so attacks see it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from spikeshield.neurons import lif_kernels, lif_triton, talif_kernels
from spikeshield.neurons.base import SpikingNeuron
from spikeshield.neurons.gradients import RateParameters, spike
from spikeshield.neurons.lif import LIFParameters
from spikeshield.neurons.surrogate import Sigmoid, Surrogate, make_surrogate
from spikeshield.neurons.synapse import PSC


@dataclass(frozen=True)
class TALIFParameters:
    """TA-LIF parameters: the LIF ones (``tau_m``, ``theta`` = theta0, ``form``, ``surrogate``, ``detach_reset``) and
    ``tau_v``, whose inverse initialises ``theta_v`` (5 for FashionMNIST, SVHN, CIFAR10; 3 for CIFAR100)."""

    tau_m: float = 5.0
    theta: float = 1.0
    tau_v: float = 5.0
    form: str = "decay"
    surrogate: Surrogate = field(default_factory=Sigmoid)
    detach_reset: bool = False

    def __post_init__(self) -> None:
        if not self.tau_v > 0:
            raise ValueError(f"TA-LIF tau_v must be > 0 (theta_v starts at 1 / tau_v); got {self.tau_v}")
        object.__setattr__(self, "surrogate", make_surrogate(self.surrogate))

    @property
    def lif(self) -> LIFParameters:
        """The underlying LIF parameters (checked there)."""
        return LIFParameters(self.tau_m, self.theta, self.form, self.surrogate, self.detach_reset)


class _FusedTALIF(torch.autograd.Function):
    """All T steps of TA-LIF (and its optional PSC filter) in one autograd node with a hand-written BPTT backward,
    through the membrane and the threshold, to the input currents and ``theta_v`` (CPU float tensors: the compiled
    kernels of :mod:`spikeshield.neurons.talif_kernels`; CUDA tensors: the Triton kernels of
    :mod:`spikeshield.neurons.lif_triton`). Same forward and gradients as the step loop."""

    @staticmethod
    def forward(ctx, current, theta_v, nds, p: LIFParameters, surrogate: Surrogate, tau_s: float | None):  # noqa: D102
        ctx.p, ctx.surrogate, ctx.tau_s = p, surrogate, tau_s
        ctx.set_materialize_grads(False)
        ctx.triton = lif_triton.supported(current)
        run = lif_triton.talif_forward if ctx.triton else talif_kernels.forward
        out, membrane, theta = run(current, p.decay, p.input_scale, p.theta, theta_v, nds, tau_s)
        ctx.save_for_backward(membrane, theta, theta_v, nds)
        ctx.mark_non_differentiable(membrane, theta)
        return out, membrane, theta

    @staticmethod
    def backward(ctx, grad_out, _grad_membrane, _grad_theta):  # noqa: D102
        if grad_out is None:
            return None, None, None, None, None, None
        p = ctx.p
        membrane, theta, theta_v, nds = ctx.saved_tensors
        run = lif_triton.talif_backward if ctx.triton else talif_kernels.backward
        grad, grad_v = run(grad_out, membrane, theta, theta_v, nds, p.decay, p.input_scale, p.detach_reset, ctx.tau_s,
                           ctx.surrogate)
        return grad, (grad_v if ctx.needs_input_grad[1] else None), None, None, None, None


class TALIF(SpikingNeuron):
    """TA-LIF neurons on ``[T, B, *shape]`` input currents, optionally followed by a PSC filter.

    ``lr_scale`` tells the trainer to give ``theta_v`` a tenth of the weights' learning rate (METHODS 1).

    Args:
        shape: per-sample activation shape (``theta_v`` and the NDS are per neuron).
        steps: time steps T (the NDS holds one value per step).
        p: :class:`TALIFParameters`.
        synapse: optional PSC filter.

    >>> talif = TALIF((100,), steps=5)
    >>> spikes = talif(torch.rand(5, 8, 100))              # [T, B, 100]
    >>> talif.set_nds(torch.zeros(5, 100))                 # from spikeshield.defenses.hosnn.collect_nds
    """

    #: learning-rate factor per own parameter, applied by the trainer's optimiser
    lr_scale = {"theta_v": 0.1}

    def __init__(self, shape: tuple[int, ...], steps: int, p: TALIFParameters | None = None,
                 synapse: PSC | None = None) -> None:
        super().__init__(synapse)
        self.p = p if p is not None else TALIFParameters()
        self.lif = self.p.lif
        self.surrogate = self.p.surrogate
        self.theta_v = nn.Parameter(torch.full(tuple(shape), 1.0 / self.p.tau_v))
        self.register_buffer("nds", torch.zeros(steps, *shape))

    def step(self, current, state, surrogate):
        """One step: state ``(u[t-1], s[t-1], theta[t-1], t)`` -> ``(s[t], u[t] pre-reset, new state)``."""
        p = self.lif
        u = p.input_scale * current
        if state is None:
            theta, t = torch.full_like(u, p.theta), 0
        else:
            u_prev, s_prev, theta, t = state
            reset = s_prev.detach() if p.detach_reset else s_prev
            u = u + p.decay * u_prev * (1 - reset)
        if t >= self.nds.shape[0]:
            raise ValueError(f"TA-LIF was built for {self.nds.shape[0]} time steps (its NDS); the input has more")
        theta = theta + self.theta_v * (u - self.nds[t])
        s = spike(u - theta, surrogate)
        return s, u, (u, s, theta, t + 1)

    def run(self, current: torch.Tensor, surrogate: Surrogate) -> tuple[torch.Tensor, torch.Tensor]:
        """All steps, and the synapse, in one fused autograd node on CPU float tensors and (with Triton) CUDA ones,
        the fast default path; the step loop elsewhere (same forward and gradients)."""
        if not (lif_kernels.supported(current) or lif_triton.supported(current)):
            return super().run(current, surrogate)
        if current.shape[0] > self.nds.shape[0]:
            raise ValueError(f"TA-LIF was built for {self.nds.shape[0]} time steps (its NDS); the input has more")
        tau_s = self.synapse.tau_s if self.synapse is not None else None
        nds = self.nds[: current.shape[0]]
        out, membrane, theta = _FusedTALIF.apply(current, self.theta_v, nds, self.lif, surrogate, tau_s)
        self.record_fused(membrane, theta, out)
        return out, membrane

    def rate_parameters(self) -> RateParameters:
        """RGA's view of the neuron: LIF leak and input scale with the base threshold ``theta0``."""
        return RateParameters(decay=self.lif.decay, theta=self.lif.theta, input_scale=self.lif.input_scale)

    def set_nds(self, nds: torch.Tensor) -> None:
        """Install a Neural Dynamic Signature ``[T, *shape]`` (copied; frozen)."""
        if tuple(nds.shape) != tuple(self.nds.shape):
            raise ValueError(f"NDS must have shape {list(self.nds.shape)} ([T, *neuron shape]); got {list(nds.shape)}")
        self.nds.copy_(nds.detach())

    @torch.no_grad()
    def after_step(self) -> None:
        """Keep ``theta_v >= 0`` (call after every optimiser step; the trainer does)."""
        self.theta_v.clamp_(min=0)

    def extra_repr(self) -> str:
        p = self.p
        return f"shape={tuple(self.theta_v.shape)}, T={self.nds.shape[0]}, tau_m={p.tau_m}, theta0={p.theta}, " \
               f"tau_v={p.tau_v}, surrogate={p.surrogate}"
