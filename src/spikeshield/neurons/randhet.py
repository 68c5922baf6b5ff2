"""RandHet-SNN neurons: random heterogeneous time constants (METHODS 2), and the deterministic Het-SNN ablation.

Every step: ``u[t] = k u[t-1] (1 - s[t-1]) + (1 - k) I[t]``, ``s[t] = H(u[t] - theta)`` (strict), the reset detached,
with ``k = sigmoid(r)``: an equivalent time constant ``tau = 1 + exp(r)`` (median 2 for ``r = 0``).

- RandHet (``neuron="randhet"``): ``r ~ N(0, sigma^2)`` drawn afresh every step, per sample and neuron (the authors'
  code; sigma is a standard deviation there, a "variance" in the paper);
- RandHet* (``"randhet_fwd"``, paper eq. 7): ``r`` drawn once per forward pass and kept for all steps;
- Het-SNN (``"het"``): ``r`` a learnable, deterministic parameter per neuron (initialised at 0, tau = 2).

Noise stays on at test time: RandHet models are stochastic (``is_stochastic``), evaluated with EOT and the decision
rule. The draws come from the global torch generator, in the same order in every run of the step loop, so the
attacker's backward modes replay the forward's own draw (:class:`~spikeshield.neurons.gradients.DrawReplay`).
``sigma = 0`` is the plain LIF with tau 2 and threshold 0.5 (time-constant form, detached reset).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from spikeshield.neurons.base import SpikingNeuron
from spikeshield.neurons.gradients import RateParameters, spike
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


def heterogeneous_step(current: torch.Tensor, u_prev: torch.Tensor | None, s_prev: torch.Tensor | None,
                       k: torch.Tensor, theta: float, surrogate: Surrogate) -> tuple[torch.Tensor, torch.Tensor]:
    """One step with leak ``k`` (broadcastable to ``current``): ``(s[t], u[t] pre-reset)``; the reset is detached."""
    u = (1 - k) * current
    if u_prev is not None:
        u = u + k * u_prev * (1 - s_prev.detach())
    return spike(u - theta, surrogate), u


class RandHet(SpikingNeuron):
    """RandHet / RandHet* neurons on ``[T, B, ...]`` currents: a random time constant per sample and neuron, redrawn
    every step (``per_step=True``) or once per forward pass.

    >>> layer = RandHet(RandHetParameters(sigma=1.0))
    >>> spikes = layer(torch.rand(8, 4, 100))   # [T, B, N]; two calls differ
    """

    def __init__(self, p: RandHetParameters | None = None, synapse: PSC | None = None) -> None:
        super().__init__(synapse)
        self.p = p if p is not None else RandHetParameters()
        self.surrogate = self.p.surrogate

    @property
    def is_stochastic(self) -> bool:  # noqa: D102
        return self.p.sigma > 0

    def _leak(self, current: torch.Tensor) -> torch.Tensor:
        """``k = sigmoid(r)`` for one step's currents, ``r ~ N(0, sigma^2)`` from the global torch generator."""
        return torch.sigmoid(self.p.sigma * torch.randn_like(current)) if self.p.sigma > 0 else \
            torch.full_like(current, 0.5)

    def step(self, current, state, surrogate):
        """One step; the state is ``(u, s, k)`` (``k`` kept across steps only for RandHet*)."""
        u_prev, s_prev, k = state if state is not None else (None, None, None)
        if k is None or self.p.per_step:
            k = self._leak(current)
        s, u = heterogeneous_step(current, u_prev, s_prev, k, self.p.theta, surrogate)
        return s, u, (u, s, k)

    def rate_parameters(self) -> RateParameters:
        """The median leak ``k = 0.5`` (``r = 0``), threshold and input scale ``1 - k``, for BPTR / RGA."""
        return RateParameters(decay=0.5, theta=self.p.theta, input_scale=0.5)

    def extra_repr(self) -> str:
        p = self.p
        return f"sigma={p.sigma}, theta={p.theta}, per_step={p.per_step}, surrogate={p.surrogate}"


class Het(SpikingNeuron):
    """Het-SNN neurons: a learnable, deterministic time constant per neuron, ``k = sigmoid(r)`` with ``r`` a
    parameter of the activations' per-sample ``shape`` (initialised at 0: tau = 2)."""

    def __init__(self, shape: tuple[int, ...], theta: float = 0.5, surrogate: Surrogate | str | dict | None = None,
                 synapse: PSC | None = None) -> None:
        super().__init__(synapse)
        self.r = nn.Parameter(torch.zeros(shape))
        self.theta = float(theta)
        self.surrogate = make_surrogate(surrogate if surrogate is not None else ArcTan(2.0))

    def step(self, current, state, surrogate):
        """One step with the learned leak; the state is ``(u, s)``."""
        u_prev, s_prev = state if state is not None else (None, None)
        s, u = heterogeneous_step(current, u_prev, s_prev, torch.sigmoid(self.r), self.theta, surrogate)
        return s, u, (u, s)

    def rate_parameters(self) -> RateParameters:
        """The learned per-neuron leak, threshold and input scale ``1 - k``, for BPTR / RGA."""
        k = torch.sigmoid(self.r.detach())
        return RateParameters(decay=k, theta=self.theta, input_scale=1 - k)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.r.shape)}, theta={self.theta}, surrogate={self.surrogate}"
