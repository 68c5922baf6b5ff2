"""The neuron interface: a pure step function plus a thin module that loops it over time (STYLE 1)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spikeshield.neurons.gradients import active_surrogate
from spikeshield.neurons.recording import emit
from spikeshield.neurons.surrogate import Surrogate
from spikeshield.neurons.synapse import PSC


class SpikingNeuron(nn.Module):
    """A layer of spiking neurons mapping input currents ``[T, B, ...]`` to spikes ``[T, B, ...]``.

    ``synapse`` (optional) filters the spikes into post-synaptic currents. Subclasses define
    :meth:`step` (one time step, state in and out, spike through
    :func:`spikeshield.neurons.gradients.spike`); they may override :meth:`run` with a faster fused kernel that
    gives the same forward and gradients. State is created inside ``forward`` and dropped after (DESIGN 2).
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

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        """Spikes (or their PSC, with a synapse) ``[T, B, ...]`` for input currents ``[T, B, ...]``."""
        out, membrane = self.run(current, active_surrogate(self.surrogate))
        emit(self, "membrane", membrane)
        return out
