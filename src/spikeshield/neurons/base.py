"""The neuron interface: a pure step function plus a thin module that loops it over time (STYLE 1)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spikeshield.neurons.gradients import BackwardMode, RateParameters, active_mode, active_surrogate
from spikeshield.neurons.recording import emit
from spikeshield.neurons.surrogate import Surrogate
from spikeshield.neurons.synapse import PSC


class SpikingNeuron(nn.Module):
    """A layer of spiking neurons mapping input currents ``[T, B, ...]`` to spikes ``[T, B, ...]``.

    ``synapse`` (optional) filters the spikes into post-synaptic currents. Subclasses define
    :meth:`step` (one time step, state in and out, spike through
    :func:`spikeshield.neurons.gradients.spike`); they may override :meth:`run` with a faster fused kernel that
    gives the same forward and gradients. State is created inside ``forward`` and dropped after (DESIGN 2).

    A neuron supports the attacker's rate-based backward modes (BPTR, RGA; METHODS 7) by returning its leak,
    threshold and input scale from :meth:`rate_parameters`; its spikes must then be ``membrane > theta``.
    """

    is_stochastic: bool = False
    surrogate: Surrogate

    def __init__(self, synapse: PSC | None = None) -> None:
        super().__init__()
        self.synapse = synapse

    def step(self, current: torch.Tensor, state: Any, surrogate: Surrogate) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """One step: ``(input current, state or None)`` -> ``(spikes, pre-reset membrane, new state)``."""
        raise NotImplementedError

    def run(self, current: torch.Tensor, surrogate: Surrogate) -> tuple[torch.Tensor, torch.Tensor]:
        """All steps: ``[T, B, ...]`` currents -> (output, pre-reset membrane), both ``[T, B, ...]``.

        The output is the spikes, or their PSC if the layer has a synapse.
        """
        state, spikes, membrane = None, [], []
        for current_t in current:
            s, u, state = self.step(current_t, state, surrogate)
            spikes.append(s)
            membrane.append(u)
        spikes = torch.stack(spikes)
        emit(self, "spikes", spikes)
        return (self.synapse(spikes) if self.synapse is not None else spikes), torch.stack(membrane)

    def rate_parameters(self) -> RateParameters:
        """Leak, threshold and input scale for the rate-based backward modes; neurons that support them override."""
        raise NotImplementedError

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        """Spikes (or their PSC, with a synapse) ``[T, B, ...]`` for input currents ``[T, B, ...]``."""
        mode = active_mode()
        if mode is not None:
            return self._forward_in_mode(current, mode)
        out, membrane = self.run(current, active_surrogate(self.surrogate))
        emit(self, "membrane", membrane)
        return out

    def _forward_in_mode(self, current: torch.Tensor, mode: BackwardMode) -> torch.Tensor:
        """The exact output (computed without a graph) carrying the mode's gradient ``dL/dI = factor * dL/ds``.

        ``out + (h - h.detach())`` with ``h = PSC(current * factor)`` (or ``current * factor`` without a synapse):
        the added term is exactly zero, so the value is the default forward's to the bit, and the gradient flows
        through the PSC filter, then through the mode's diagonal factor.
        """
        try:
            p = self.rate_parameters()
        except NotImplementedError:
            raise NotImplementedError(
                f"neuron {type(self).__name__} does not support the backward mode {mode.name!r}: it defines no "
                f"rate_parameters() (leak, threshold, input scale); use a surrogate gradient instead") from None
        with torch.no_grad():
            out, membrane = self.run(current, self.surrogate)
        emit(self, "membrane", membrane)
        if not (torch.is_grad_enabled() and current.requires_grad):
            return out
        with torch.no_grad():
            factor = mode.factor(current, membrane > p.theta, p)
        carrier = current * factor
        if self.synapse is not None:
            carrier = getattr(self.synapse, "filter", self.synapse)(carrier)
        return out + (carrier - carrier.detach())
