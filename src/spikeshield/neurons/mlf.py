"""Multi-level firing (MLF) neurons (Feng et al. 2022; the purification paper's classifier, METHODS 3).

A unit holds K sub-neurons that see the same input current and differ only in their thresholds ``V_k``
(0.6 / 1.6 / 2.6 by default). Each is a decay-form LIF with hard reset::

    u_k[t] = decay * u_k[t-1] * (1 - s_k[t-1]) + I[t]        s_k[t] = H(u_k[t] - V_k)
    o[t]   = sum_k s_k[t]                                     (0 .. K)

The reset term is not detached (as the MLF code). ``K = 1`` is exactly a LIF with threshold ``V_1`` and leak
``decay`` (``tau_m = 1 / (1 - decay)``). The pre-reset membrane a layer reports (recording, the attacker's modes)
has a trailing axis of the K sub-neurons: ``[T, B, ..., K]``.

How each attacker's gradient mode (METHODS 7) treats the K thresholds:

- a surrogate swap: every sub-neuron's spike back-propagates through the swapped surrogate at its own threshold,
  and the unit's gradient is the sum over sub-neurons;
- BPTR: the per-step gradient passes where any sub-neuron fired at least once;
- RGA: the sum over sub-neurons of each one's RGA factor at its own threshold (sub-neuron k fires like a LIF of
  threshold ``V_k``);
- HART, HART-mix, PDSG, ASSG: the step function unrolled, each sub-neuron at its own threshold (PDSG's spread is
  taken over the sub-neurons as well; ASSG keeps statistics per sub-neuron);
- hosnn-code: the sum over sub-neurons of the surrogate at ``u_k - V_k``;
- the ANN twin: ReLU, or the quantised clamp to ``[0, K]`` (``grad="ann-clamp"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from spikeshield.neurons import lif
from spikeshield.neurons.base import SpikingNeuron
from spikeshield.neurons.gradients import RateParameters, spike
from spikeshield.neurons.lif import LIFParameters
from spikeshield.neurons.recording import emit
from spikeshield.neurons.surrogate import Rectangle, Surrogate, make_surrogate
from spikeshield.neurons.synapse import PSC


@dataclass(frozen=True)
class MLFParameters:
    """MLF parameters: ``levels`` K sub-neurons with thresholds ``theta + k * spacing`` (k = 0 .. K-1), leak
    ``decay`` in [0, 1), the spike's ``surrogate`` (the MLF code's rectangle of width 1) and ``detach_reset``."""

    levels: int = 3
    theta: float = 0.6
    spacing: float = 1.0
    decay: float = 0.25
    surrogate: Surrogate = field(default_factory=Rectangle)
    detach_reset: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.levels, bool) or not isinstance(self.levels, int) or self.levels < 1:
            raise ValueError(f"MLF levels (K sub-neurons) must be an integer >= 1; got {self.levels!r}")
        if not 0 <= self.decay < 1:
            raise ValueError(f"MLF decay must lie in [0, 1); got {self.decay}")
        if not (self.theta > 0 and self.spacing > 0):
            raise ValueError(f"MLF theta and spacing must be > 0; got theta={self.theta}, spacing={self.spacing}")
        object.__setattr__(self, "surrogate", make_surrogate(self.surrogate))

    @property
    def thresholds(self) -> tuple[float, ...]:
        """The K thresholds ``V_k``, lowest first."""
        return tuple(self.theta + k * self.spacing for k in range(self.levels))


def mlf_step(current: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None, p: MLFParameters,
             thresholds: torch.Tensor, surrogate: Surrogate):
    """One MLF step: ``(I[t], (u[t-1], s[t-1]))`` -> ``(o[t], u[t] pre-reset, (u[t], s[t]))``; ``u`` and ``s`` carry
    a trailing axis of the K sub-neurons, ``thresholds`` is ``[K]``."""
    u = current.unsqueeze(-1).expand(*current.shape, p.levels)
    if state is not None:
        u_prev, s_prev = state
        reset = s_prev.detach() if p.detach_reset else s_prev
        u = u + p.decay * u_prev * (1 - reset)
    s = spike(u - thresholds, surrogate)
    return s.sum(-1), u, (u, s)


class MLF(SpikingNeuron):
    """MLF neurons on ``[T, B, ...]`` input currents: output ``[T, B, ...]`` in ``{0, .., K}``, stateless between
    calls.

    >>> mlf = MLF(MLFParameters(levels=3))
    >>> out = mlf(torch.randn(4, 8, 100))   # [T, B, N] -> [T, B, N] of 0..3
    """

    #: the membrane has one trailing axis (the sub-neurons) beyond the activations' shape
    level_dims = 1

    def __init__(self, p: MLFParameters | None = None, synapse: PSC | None = None) -> None:
        super().__init__(synapse)
        self.p = p if p is not None else MLFParameters()
        self.surrogate = self.p.surrogate
        self.register_buffer("thresholds", torch.tensor(self.p.thresholds), persistent=False)
        tau_m = 1 / (1 - self.p.decay)  # LIF's leak 1 - 1/tau_m is MLF's decay (to the last bit of rounding)
        self.sub_neurons = [LIFParameters(tau_m, theta, "decay", self.p.surrogate, self.p.detach_reset)
                            for theta in self.p.thresholds]

    def step(self, current, state, surrogate):
        """One step of :func:`mlf_step`."""
        return mlf_step(current, state, self.p, self.thresholds.to(current.dtype), surrogate)

    def run(self, current: torch.Tensor, surrogate: Surrogate) -> tuple[torch.Tensor, torch.Tensor]:
        """The fast default path: sub-neuron k is a LIF of threshold ``V_k`` on the same current, so the unit is the
        sum of K fused LIF layers (:class:`~spikeshield.neurons.lif.LIF`'s compiled kernels), with the same forward
        and gradients as looping :func:`mlf_step`. The membrane is ``[T, B, ..., K]``."""
        outs, membranes = zip(*(lif._FusedLIF.apply(current, sub, surrogate, None) for sub in self.sub_neurons),
                              strict=True)
        out, membrane = torch.stack(outs).sum(0), torch.stack(membranes, -1)
        emit(self, "spikes", out)
        return (self.synapse(out) if self.synapse is not None else out), membrane

    def rate_parameters(self) -> RateParameters:
        """Leak, the K thresholds (a tuple: RGA sums its factor over them) and input scale 1."""
        return RateParameters(decay=self.p.decay, theta=self.p.thresholds, input_scale=1.0)

    def extra_repr(self) -> str:
        p = self.p
        return f"levels={p.levels}, thresholds={p.thresholds}, decay={p.decay}, surrogate={p.surrogate}"
