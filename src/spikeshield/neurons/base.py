"""The neuron interface: a pure step function plus a thin module that loops it over time (STYLE 1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from spikeshield.neurons.gradients import RateParameters, active_mode, active_surrogate
from spikeshield.neurons.recording import emit, recording
from spikeshield.neurons.surrogate import Surrogate
from spikeshield.neurons.synapse import PSC


class SpikingNeuron(nn.Module):
    """A layer of spiking neurons mapping input currents ``[T, B, ...]`` to spikes ``[T, B, ...]``.

    ``synapse`` (optional) filters the spikes into post-synaptic currents. Subclasses define
    :meth:`step` (one time step, state in and out, spike through
    :func:`spikeshield.neurons.gradients.spike`); they may override :meth:`run` with a faster fused kernel that
    gives the same forward and gradients. State is created inside ``forward`` and dropped after (DESIGN 2).

    Every attacker's backward mode (METHODS 7) works through :meth:`step` alone (:meth:`unroll`), except RGA, whose
    rule is defined by the leak, threshold and input scale a neuron gives in :meth:`rate_parameters`.
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
        spikes, membrane = self._loop(current, lambda t: surrogate)
        emit(self, "spikes", spikes)
        return (self.synapse(spikes) if self.synapse is not None else spikes), membrane

    def record_fused(self, membrane: torch.Tensor, threshold: float | torch.Tensor, out: torch.Tensor) -> None:
        """What :meth:`run` records, for an override that computed all steps in one fused node: the spikes (pre-reset
        ``membrane`` above ``threshold``) and, with a synapse, its PSC ``out``. Nothing is computed unless recording."""
        if recording():
            emit(self, "spikes", (membrane > threshold).to(out.dtype))
            if self.synapse is not None:
                emit(self.synapse, "psc", out)

    def unroll(self, current: torch.Tensor, surrogate_at: Callable[[int], Surrogate],
               detach_state: bool = False) -> torch.Tensor:
        """Spikes ``[T, B, ...]`` from looping :meth:`step` under autograd, step ``t`` back-propagating through
        ``surrogate_at(t)``; with ``detach_state`` no gradient flows from one step's state to the next.

        The attacker's unrolled backward modes (HART, PDSG, ASSG; METHODS 7) take their gradients from here.
        """
        return self._loop(current, surrogate_at, detach_state)[0]

    def initial_state(self, current: torch.Tensor) -> Any:
        """The state before the first step of a forward pass on ``current`` ``[T, B, ...]`` (None: none yet).
        Neurons that draw their randomness once per forward pass draw it here."""
        return None

    def _loop(self, current, surrogate_at, detach_state: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        state, spikes, membrane = self.initial_state(current), [], []
        for t, current_t in enumerate(current):
            if detach_state and state is not None:
                state = _detached(state)
            s, u, state = self.step(current_t, state, surrogate_at(t))
            spikes.append(s)
            membrane.append(u)
        return torch.stack(spikes), torch.stack(membrane)

    def exact(self, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The default forward's (output, pre-reset membrane) computed without a graph; the membrane is recorded."""
        with torch.no_grad():
            out, membrane = self.run(current, self.surrogate)
        emit(self, "membrane", membrane)
        return out, membrane

    def filter_spikes(self, spikes: torch.Tensor) -> torch.Tensor:
        """The layer's synapse filter applied to ``spikes`` (no recording), or the spikes if it has none."""
        return self.synapse.filter(spikes) if self.synapse is not None else spikes

    def rate_parameters(self) -> RateParameters:
        """Leak, threshold and input scale for the rate-based backward modes; neurons that support them override."""
        raise NotImplementedError

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        """Spikes (or their PSC, with a synapse) ``[T, B, ...]`` for input currents ``[T, B, ...]``; float16 and
        bfloat16 currents (autocast) are integrated in float32 and the output cast back.

        Under an attacker's :class:`~spikeshield.neurons.gradients.BackwardMode` the mode computes it (same value).
        """
        if current.dtype in (torch.float16, torch.bfloat16):  # mixed precision: the membrane integrates in float32
            return self(current.float()).to(current.dtype)
        mode = active_mode()
        if mode is not None:
            return mode.apply(self, current)
        out, membrane = self.run(current, active_surrogate(self.surrogate))
        emit(self, "membrane", membrane)
        return out


def _detached(state: Any) -> Any:
    """A neuron state (a tensor, or tuples / lists of them) with every tensor detached."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, tuple | list):
        return type(state)(_detached(v) for v in state)
    return state


def has_spiking_neurons(model: Any) -> bool:
    """True if ``model`` is an ``nn.Module`` containing spikeshield spiking neurons (the layers the attacker's
    gradient modes act on)."""
    modules = getattr(model, "modules", None)
    return callable(modules) and any(isinstance(m, SpikingNeuron) for m in modules())
