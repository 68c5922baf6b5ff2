"""Norse neurons as spikeshield neurons: the current-based LIF (``LIFCell``, ``LIF``) and the leaky-integrator
readout (``LICell``, ``LI``), by Norse's own Euler equations and threshold function."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spikeshield.adapters.foreign import ForeignNeuron, ForeignSurrogate, Integrator
from spikeshield.neurons.gradients import RateParameters, spike
from spikeshield.neurons.surrogate import Surrogate


class NorseLIF(ForeignNeuron):
    """Norse's feed-forward LIF step: ``i += I``; ``v_d = v + dt/tau_mem ((v_leak - v) + i)``;
    ``i -= dt/tau_syn i``; ``z = H(v_d - v_th)``; ``v = (1 - z) v_d + z v_reset``; state starts at
    ``(v_leak, 0)``. Returns ``(z, None)``, the module's ``(output, state)`` shape."""

    def __init__(self, neuron: nn.Module, T: int, fold: bool) -> None:
        from norse.torch.functional.threshold import threshold

        p = neuron.p
        if p.method == "adjoint":
            raise ValueError("Norse's adjoint LIF is not supported by spikeshield.adapters.wrap")
        super().__init__(neuron, ForeignSurrogate(lambda x: threshold(x, p.method, p.alpha), "norse." + p.method),
                         T, fold)

    def step(self, current: torch.Tensor, state: Any, surrogate: Surrogate):  # noqa: D102
        p, dt = self.neuron.p, self.neuron.dt
        v, i = (p.v_leak, torch.zeros_like(current)) if state is None else state
        i = i + current
        v_decayed = v + dt * p.tau_mem_inv * ((p.v_leak - v) + i)
        i = i + -dt * p.tau_syn_inv * i
        z = spike(v_decayed - p.v_th, surrogate)
        v = (1 - z) * v_decayed + z * p.v_reset
        return z, v_decayed, (v, i)

    def rate_parameters(self) -> RateParameters:
        """A rate view of the current-based LIF: leak ``1 - dt/tau_mem``, threshold above rest ``v_th - v_leak`` and
        input scale ``tau_syn / tau_mem`` (the synaptic current's steady state drives ``v``); an approximation, as
        every rate mode is, that ignores the synaptic filter's lag."""
        p, dt = self.neuron.p, self.neuron.dt
        return RateParameters(decay=1 - dt * p.tau_mem_inv, theta=p.v_th - p.v_leak,
                              input_scale=p.tau_mem_inv / p.tau_syn_inv)

    def respond(self, out: torch.Tensor, seq: torch.Tensor) -> Any:  # noqa: D102
        return out, None

    def respond_twin(self, activation: torch.Tensor, current: torch.Tensor) -> Any:  # noqa: D102
        return activation, None


class NorseLI(Integrator):
    """Norse's leaky integrator (no spikes): ``i += I``; ``v += dt/tau_mem ((v_leak - v) + i)``;
    ``i -= dt/tau_syn i``; output ``v``. Returns ``(v, None)``."""

    def step(self, current: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:  # noqa: D102
        p, dt = self.module.p, self.module.dt
        v, i = (p.v_leak, torch.zeros_like(current)) if state is None else state
        i = i + current
        v = v + dt * p.tau_mem_inv * ((p.v_leak - v) + i)
        i = i + -dt * p.tau_syn_inv * i
        return v, (v, i)

    def respond(self, out: torch.Tensor) -> Any:  # noqa: D102
        return out, None


def convert(net: nn.Module) -> tuple[dict[str, type], bool]:
    """``({Norse class: adapter}, fold)``: cells (``LIFCell``, ``LICell``) make a per-step network (fold); the
    time-looped modules (``LIF``, ``LI``) a sequence network; a mixture is an error."""
    from norse.torch import LI, LIF, LICell, LIFCell

    cells = any(isinstance(m, LIFCell | LICell) for m in net.modules())
    loops = any(isinstance(m, LIF | LI) for m in net.modules())
    if cells and loops:
        raise ValueError("the Norse network mixes cells (LIFCell, LICell) and time-looped layers (LIF, LI); "
                         "use one kind")
    return {LIFCell: NorseLIF, LIF: NorseLIF, LICell: NorseLI, LI: NorseLI}, not loops


def is_neuron(module: nn.Module) -> bool:
    """True for any Norse stateful module (one with a state fallback)."""
    return hasattr(module, "state_fallback")
