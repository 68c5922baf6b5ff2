"""SpikingJelly neurons as spikeshield neurons: any ``BaseNode`` (IF, LIF, PLIF, ...) through its own functional
step, its surrogate routed through ours."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spikeshield.adapters.foreign import ForeignNeuron, ForeignSurrogate
from spikeshield.neurons.gradients import RateParameters, spike
from spikeshield.neurons.surrogate import Surrogate


class _RoutedSpike(nn.Module):
    """Stands in for the node's ``surrogate_function``: SpikingJelly's forward ``H(x) = [x >= 0]`` through
    :func:`spike` with the surrogate of the current step; remembers its last argument (the shifted membrane)."""

    def __init__(self) -> None:
        super().__init__()
        self.surrogate: Surrogate | None = None
        self.last: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last = x
        # x >= 0 exactly as SpikingJelly, as our strict x' > 0 on the next float up (value only; gradient of x)
        up = x + (torch.nextafter(x, torch.full_like(x, torch.inf)) - x).detach()
        return spike(up, self.surrogate)


class SpikingJellyNode(ForeignNeuron):
    """A SpikingJelly ``BaseNode`` stepped by its ``single_step_functional_forward`` (explicit state, no module
    memory touched), its spike function replaced by :class:`_RoutedSpike`. The membrane reported is the
    pre-reset one (``v - v_threshold`` at the spike, plus ``v_threshold``)."""

    def __init__(self, neuron: nn.Module, T: int, fold: bool) -> None:
        own = neuron.surrogate_function
        super().__init__(neuron, ForeignSurrogate(own, "spikingjelly." + type(own).__name__), T, fold)
        self.own = own  # the original surrogate module, kept for its parameters and state_dict keys
        neuron.surrogate_function = _RoutedSpike()

    def step(self, current: torch.Tensor, state: Any, surrogate: Surrogate):  # noqa: D102
        node, router = self.neuron, self.neuron.surrogate_function
        if state is None:
            state = node.materialize_states((current,), tuple(node._memories_rv.values()), "s")
        router.surrogate = surrogate
        (spikes,), state = node.single_step_functional_forward((current,), state)
        membrane = router.last + node.v_threshold
        router.last = None
        return spikes, membrane, state

    def rate_parameters(self) -> RateParameters:  # noqa: D102
        from spikingjelly.activation_based import neuron

        node = self.neuron
        if isinstance(node, neuron.IFNode):
            return RateParameters(decay=1.0, theta=node.v_threshold)
        if isinstance(node, neuron.ParametricLIFNode):
            inv_tau = node.w.detach().sigmoid()
            return RateParameters(decay=1 - inv_tau, theta=node.v_threshold,
                                  input_scale=inv_tau if node.decay_input else 1.0)
        if isinstance(node, neuron.LIFNode):
            return RateParameters(decay=1 - 1 / node.tau, theta=node.v_threshold,
                                  input_scale=1 / node.tau if node.decay_input else 1.0)
        return super().rate_parameters()


def convert(net: nn.Module) -> tuple[dict[str, type], bool]:
    """``({SpikingJelly class: adapter}, fold)``: fold for single-step networks, sequence for multi-step ones (the
    nodes' ``step_mode``; a mixture is an error)."""
    from spikingjelly.activation_based import neuron

    modes = {m.step_mode for m in net.modules() if isinstance(m, neuron.BaseNode)}
    if len(modes) > 1:
        raise ValueError("the SpikingJelly network mixes single-step and multi-step neurons; call "
                         "spikingjelly.activation_based.functional.set_step_mode(net, 's' or 'm') first")
    return {neuron.BaseNode: SpikingJellyNode}, modes != {"m"}


def is_neuron(module: nn.Module) -> bool:
    """True for any stateful SpikingJelly module (a ``MemoryModule``: neurons, recurrent containers, ...)."""
    from spikingjelly.activation_based import base

    return isinstance(module, base.MemoryModule)
