"""snnTorch neurons as spikeshield neurons: ``snntorch.Leaky`` (its equations, its surrogate, every reset option)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spikeshield.adapters.foreign import ForeignNeuron, ForeignSurrogate
from spikeshield.neurons.gradients import RateParameters, spike
from spikeshield.neurons.surrogate import Surrogate

RESETS = {0: "subtract", 1: "zero", 2: "none"}


class SnnTorchLeaky(ForeignNeuron):
    """``snntorch.Leaky``: ``reset = H(mem[t-1] - thr)`` (detached), then
    ``mem[t] = beta mem[t-1] + I[t] - reset thr`` (subtract), ``beta (1 - reset) mem[t-1] + I[t]`` (zero) or
    ``beta mem[t-1] + I[t]`` (none), ``spk[t] = H(mem[t] - thr) * graded_spikes_factor``; with
    ``reset_delay=False`` the reset is applied in the same step, as snnTorch does. ``beta`` is clamped to [0, 1].
    Returns what the module returns: ``spk``, or ``(spk, mem)`` for ``output=True``."""

    def __init__(self, neuron: nn.Module, T: int, fold: bool) -> None:
        for flag in ("inhibition", "state_quant"):
            if getattr(neuron, flag, False):
                raise ValueError(f"snntorch.Leaky with {flag}=True is not supported by spikeshield.adapters.wrap")
        super().__init__(neuron, ForeignSurrogate(neuron.spike_grad, "snntorch." + _name(neuron.spike_grad)), T,
                         fold)

    def step(self, current: torch.Tensor, state: Any, surrogate: Surrogate):  # noqa: D102
        n = self.neuron
        mem = torch.zeros_like(current) if state is None else state
        threshold, beta, graded = n.threshold, n.beta.clamp(0, 1), n.graded_spikes_factor
        reset = (mem - threshold > 0).to(current.dtype)
        kind = RESETS[int(n.reset_mechanism_val)]
        if kind == "subtract":
            mem = beta * mem + current - reset * threshold
        elif kind == "zero":
            mem = beta * ((1 - reset) * mem) + current
        else:
            mem = beta * mem + current
        spikes = spike(mem - threshold, surrogate) * graded
        membrane = mem
        if not n.reset_delay and kind != "none":
            do_reset = spikes / graded - reset
            mem = mem - do_reset * threshold if kind == "subtract" else mem - do_reset * mem
        return spikes, membrane, mem

    def rate_parameters(self) -> RateParameters:  # noqa: D102
        n = self.neuron
        return RateParameters(decay=n.beta.detach().clamp(0, 1), theta=n.threshold.detach())

    def reset_mem(self) -> torch.Tensor:
        """snnTorch's state initialiser, for networks that pass membranes themselves (which then fail with a clear
        error on their first step): an empty membrane."""
        return torch.zeros(0)

    init_leaky = reset_mem

    def respond(self, out: torch.Tensor, seq: torch.Tensor) -> Any:  # noqa: D102
        return (out, self.membrane(seq)) if self._returns_membrane() else out

    def respond_twin(self, activation: torch.Tensor, current: torch.Tensor) -> Any:  # noqa: D102
        return (activation, current) if self._returns_membrane() else activation

    def _returns_membrane(self) -> bool:
        return bool(self.neuron.output or not self.neuron.init_hidden)


def _name(fn: Any) -> str:
    """A spike function's name (snnTorch's surrogates are closures named ``inner`` inside ``atan`` etc.)."""
    qualname = getattr(fn, "__qualname__", type(fn).__name__)
    return qualname.split(".")[0]


def convert(net: nn.Module) -> tuple[dict[str, type], bool]:
    """``({snnTorch class: adapter}, fold)``: snnTorch networks are per-step functions (``init_hidden=True``)."""
    import snntorch

    return {snntorch.Leaky: SnnTorchLeaky}, True


def is_neuron(module: nn.Module) -> bool:
    """True for any snnTorch neuron (supported or not)."""
    import snntorch

    return isinstance(module, snntorch.SpikingNeuron)
