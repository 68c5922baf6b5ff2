"""RandHet-SNN neurons: random heterogeneous time constants (METHODS 2), and the deterministic Het-SNN ablation.

Every step: ``u[t] = k u[t-1] (1 - s[t-1]) + (1 - k) I[t]``, ``s[t] = H(u[t] - theta)`` (strict), the reset detached,
with ``k = sigmoid(r)``: an equivalent time constant ``tau = 1 + exp(r)`` (median 2 for ``r = 0``).

- RandHet (``neuron="randhet"``): ``r ~ N(0, sigma^2)`` drawn afresh every step, per sample and neuron (the authors'
  code; sigma is a standard deviation there, a "variance" in the paper);
- RandHet* (``"randhet_fwd"``, paper eq. 7): ``r`` drawn once per forward pass and kept for all steps;
- Het-SNN (``"het"``): ``r`` a learnable, deterministic parameter per neuron (initialised at 0, tau = 2).

Noise stays on at test time: RandHet models are stochastic (``is_stochastic``), evaluated with EOT and the decision
rule. A forward pass takes one seed from the global torch generator, before any step; its time constants are a
counter-based hash of the seed (:class:`~spikeshield.neurons.heterogeneous_kernels.LeakDraw`), computed inside the
fused kernel (reproducible, and cheap: no random tensor is stored). The step loop computes the same leaks from the
same seed, so the attacker's backward modes replay the forward's own draw
(:class:`~spikeshield.neurons.gradients.DrawReplay`).
``sigma = 0`` is the plain LIF with tau 2 and threshold 0.5 (time-constant form, detached reset).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from spikeshield.neurons import heterogeneous_kernels, lif_kernels
from spikeshield.neurons.base import SpikingNeuron
from spikeshield.neurons.gradients import RateParameters, spike
from spikeshield.neurons.heterogeneous_kernels import LeakDraw, leak_table
from spikeshield.neurons.surrogate import ArcTan, Surrogate, make_surrogate
from spikeshield.neurons.synapse import PSC


@dataclass(frozen=True)
class RandHetParameters:
    """RandHet parameters: ``sigma`` the standard deviation of ``r`` (1.0 in the paper's code; 0 gives the plain LIF
    with tau 2), ``theta`` the threshold (0.5), ``surrogate`` the spike's backward (arctan, alpha 2), ``per_step``
    redraw ``r`` every step (RandHet) or once per forward pass (RandHet*)."""

    sigma: float = 1.0
    theta: float = 0.5
    surrogate: Surrogate = field(default_factory=lambda: ArcTan(2.0))
    per_step: bool = True

    def __post_init__(self) -> None:
        if not self.sigma >= 0:
            raise ValueError(f"RandHet sigma (standard deviation of r) must be >= 0; got {self.sigma}")
        object.__setattr__(self, "surrogate", make_surrogate(self.surrogate))


class _FusedHeterogeneous(torch.autograd.Function):
    """All T steps of a neuron with leaks ``k`` (a tensor, or a :class:`~.heterogeneous_kernels.LeakDraw` computed
    inside the kernel) and its optional PSC filter in one autograd node, with the BPTT backward of
    :mod:`spikeshield.neurons.heterogeneous_kernels` (compiled on CPU, a PyTorch loop elsewhere)."""

    @staticmethod
    def forward(ctx, current, leak, theta: float, surrogate: Surrogate, tau_s: float | None):  # noqa: D102
        ctx.theta, ctx.surrogate, ctx.tau_s = theta, surrogate, tau_s
        ctx.compiled = lif_kernels.supported(current)
        ctx.set_materialize_grads(False)
        if not ctx.compiled and isinstance(leak, LeakDraw):
            leak = leak.materialize(current.shape, current.device)
        run = heterogeneous_kernels.forward if ctx.compiled else heterogeneous_kernels.loop_forward
        out, membrane = run(current, leak, theta, tau_s)
        ctx.draw = leak if isinstance(leak, LeakDraw) else None
        ctx.save_for_backward(membrane, None if ctx.draw else leak, current if ctx.needs_input_grad[1] else None)
        ctx.mark_non_differentiable(membrane)
        return out, membrane

    @staticmethod
    def backward(ctx, grad_out, _grad_membrane):  # noqa: D102
        if grad_out is None:
            return None, None, None, None, None
        membrane, leak, current = ctx.saved_tensors
        back = heterogeneous_kernels.backward if ctx.compiled else heterogeneous_kernels.loop_backward
        grad, grad_leak = back(grad_out, membrane, ctx.draw or leak, current, ctx.theta, ctx.tau_s, ctx.surrogate)
        return grad, grad_leak, None, None, None


class Heterogeneous(SpikingNeuron):
    """Neurons with a leak per neuron: ``u[t] = k u[t-1] (1 - s[t-1]) + (1 - k) I[t]``, reset detached, strict
    threshold ``theta``. Subclasses give the leaks of one forward pass (:meth:`leaks`); the default forward runs all
    steps in one fused node, the step loop (:meth:`step`, for the attacker's unrolled modes) uses the same leaks."""

    theta: float

    def leaks(self, current: torch.Tensor) -> torch.Tensor:
        """The leaks ``k`` of one forward pass on currents ``[T, B, ...]``: ``[T or 1, B, ...]`` (one per step, or
        one for all steps)."""
        raise NotImplementedError

    def draw(self, current: torch.Tensor) -> LeakDraw | torch.Tensor:
        """The leaks of one forward pass as the fused kernel takes them (by default :meth:`leaks`)."""
        return self.leaks(current)

    def initial_state(self, current):
        """``(u, s, leaks, t)`` before the first step: no membrane yet, this forward pass's leaks, step 0."""
        return None, None, self.leaks(current), 0

    def step(self, current, state, surrogate):
        """One step with leak ``leaks[t]`` (or ``leaks[0]`` for all steps); the state is ``(u, s, leaks, t)``."""
        u_prev, s_prev, leaks, t = state
        k = leaks[t if leaks.shape[0] > 1 else 0]
        u = (1 - k) * current
        if u_prev is not None:
            u = u + k * u_prev * (1 - s_prev.detach())
        s = spike(u - self.theta, surrogate)
        return s, u, (u, s, leaks, t + 1)

    def run(self, current: torch.Tensor, surrogate: Surrogate) -> tuple[torch.Tensor, torch.Tensor]:
        """All steps, and the synapse, in one fused autograd node (the fast default path)."""
        tau_s = self.synapse.tau_s if self.synapse is not None else None
        out, membrane = _FusedHeterogeneous.apply(current, self.draw(current), self.theta, surrogate, tau_s)
        self.record_fused(membrane, self.theta, out)
        return out, membrane


class RandHet(Heterogeneous):
    """RandHet / RandHet* neurons on ``[T, B, ...]`` currents: a random time constant per sample and neuron, redrawn
    every step (``per_step=True``) or once per forward pass.

    >>> layer = RandHet(RandHetParameters(sigma=1.0))
    >>> spikes = layer(torch.rand(8, 4, 100))   # [T, B, N]; two calls differ
    """

    def __init__(self, p: RandHetParameters | None = None, synapse: PSC | None = None) -> None:
        super().__init__(synapse)
        self.p = p if p is not None else RandHetParameters()
        self.theta = self.p.theta
        self.surrogate = self.p.surrogate

    @property
    def is_stochastic(self) -> bool:  # noqa: D102
        return self.p.sigma > 0

    def draw(self, current: torch.Tensor) -> LeakDraw | torch.Tensor:
        """This forward pass's leaks ``k = sigmoid(sigma z)``, ``z ~ N(0, 1)`` per step, sample and neuron (RandHet)
        or per sample and neuron (RandHet*): a :class:`~.heterogeneous_kernels.LeakDraw` whose seed is one int64
        from the global torch generator; 0.5 everywhere, with no draw, for ``sigma = 0``."""
        if self.p.sigma == 0:
            return current.new_full(current.shape if self.p.per_step else (1, *current.shape[1:]), 0.5)
        seed = int(torch.randint(0, 1 << 62, (), dtype=torch.int64))
        return LeakDraw(seed, leak_table(self.p.sigma, current.dtype), self.p.per_step)

    def leaks(self, current: torch.Tensor) -> torch.Tensor:
        """:meth:`draw` as a tensor ``[T or 1, B, ...]`` (the step loop's leaks)."""
        leak = self.draw(current)
        return leak.materialize(current.shape, current.device) if isinstance(leak, LeakDraw) else leak

    def rate_parameters(self) -> RateParameters:
        """The median leak ``k = 0.5`` (``r = 0``), threshold and input scale ``1 - k``, for BPTR / RGA."""
        return RateParameters(decay=0.5, theta=self.p.theta, input_scale=0.5)

    def extra_repr(self) -> str:
        p = self.p
        return f"sigma={p.sigma}, theta={p.theta}, per_step={p.per_step}, surrogate={p.surrogate}"


class Het(Heterogeneous):
    """Het-SNN neurons: a learnable, deterministic time constant per neuron, ``k = sigmoid(r)`` with ``r`` a
    parameter of the activations' per-sample ``shape`` (initialised at 0: tau = 2)."""

    def __init__(self, shape: tuple[int, ...], theta: float = 0.5, surrogate: Surrogate | str | dict | None = None,
                 synapse: PSC | None = None) -> None:
        super().__init__(synapse)
        self.r = nn.Parameter(torch.zeros(shape))
        self.theta = float(theta)
        self.surrogate = make_surrogate(surrogate if surrogate is not None else ArcTan(2.0))

    def leaks(self, current: torch.Tensor) -> torch.Tensor:
        """The learned leak ``sigmoid(r)``, ``[1, B, *shape]`` (one for all steps and samples)."""
        return torch.sigmoid(self.r).to(current.dtype).expand(current.shape[1:]).unsqueeze(0)

    def rate_parameters(self) -> RateParameters:
        """The learned per-neuron leak, threshold and input scale ``1 - k``, for BPTR / RGA."""
        k = torch.sigmoid(self.r.detach())
        return RateParameters(decay=k, theta=self.theta, input_scale=1 - k)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.r.shape)}, theta={self.theta}, surrogate={self.surrogate}"
