"""Foreign neurons made ours: a framework's neuron module driven by its own equations, one step at a time, with its
spike routed through :func:`spikeshield.neurons.gradients.spike` so that every attacker's gradient mode reaches it.

A :class:`ForeignNeuron` takes the place of the framework's neuron inside the user's network. It keeps the
framework's module (and so its parameters) as ``neuron``, computes its dynamics as a :class:`SpikingNeuron` (state
created inside ``forward``, dropped after: nothing leaks between calls) and answers the framework's call convention:

- ``fold`` (a per-step network called once on all steps folded into the batch, ``[T*B, ...]``): the layer unfolds
  ``[T, B, ...]``, runs the steps and folds the result back;
- ``sequence`` (a network on time-major ``[T, B, ...]``, e.g. SpikingJelly's multi-step mode, Norse's ``LIF``): the
  layer runs the steps directly.

The neuron's own backward is the framework's surrogate, taken by autograd from its spike function
(:class:`ForeignSurrogate`), so ``grad="own"`` is the gradient the framework itself computes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from spikeshield.neurons.base import SpikingNeuron
from spikeshield.neurons.surrogate import Surrogate


@dataclass(frozen=True, eq=False)
class ForeignSurrogate(Surrogate):
    """The derivative of a framework's own spike function ``fn`` (Heaviside forward, surrogate backward), by autograd.

    ``name`` says where it came from (e.g. ``"snntorch.atan"``).
    """

    fn: Callable[[torch.Tensor], torch.Tensor] = field(repr=False)
    name: str = "foreign"

    def __post_init__(self) -> None:  # no positive-number parameters to check
        pass

    def derivative(self, v: torch.Tensor) -> torch.Tensor:  # noqa: D102
        with torch.enable_grad():
            leaf = v.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.fn(leaf).sum(), leaf, allow_unused=True)
        return torch.zeros_like(v) if grad is None else grad


class ForeignNeuron(SpikingNeuron):
    """A framework's neuron as a spikeshield :class:`SpikingNeuron` (see the module docstring).

    Subclasses define :meth:`step` (the framework's equations, spike through ``spike``), :meth:`rate_parameters`
    where the rate modes make sense, and :meth:`respond` (the framework's return convention).
    """

    def __init__(self, neuron: nn.Module, surrogate: Surrogate, T: int, fold: bool) -> None:
        super().__init__()
        self.neuron, self.surrogate, self.T, self.fold = neuron, surrogate, T, fold

    def forward(self, x: torch.Tensor, state: Any = None) -> Any:
        """The framework's call: ``x`` ``[T*B, ...]`` (fold) or ``[T, B, ...]`` (sequence); a ``state`` argument
        means the network steps its neurons through time itself, which a wrapped model cannot do."""
        if state is not None:
            raise RuntimeError(
                f"{type(self.neuron).__name__} was called with an explicit state: the network steps its neurons "
                f"through time itself. spikeshield.adapters.wrap needs a network that maps one time step (or the "
                f"whole [T, B, ...] sequence, for sequence-mode layers) without passing state; build the neurons "
                f"with hidden state (snnTorch init_hidden=True, Norse SequentialState) and let the wrapper loop")
        seq = unfold(x, self.T) if self.fold else x
        out = super().forward(seq)
        return self.respond(out.flatten(0, 1) if self.fold else out, seq)

    def respond(self, out: torch.Tensor, seq: torch.Tensor) -> Any:
        """What the framework's module returns, given this layer's output (folded like the input)."""
        return out

    def respond_twin(self, activation: torch.Tensor, current: torch.Tensor) -> Any:
        """The framework's return convention with ``activation`` as the output (``current``: the layer's input,
        standing in for a membrane); subclasses that return more than the output override."""
        return activation

    def membrane(self, seq: torch.Tensor) -> torch.Tensor:
        """The pre-reset membrane ``[T, B, ...]`` with a graph through the neuron's own surrogate, folded like the
        input (for frameworks that return it)."""
        membrane = self.run(seq, self.surrogate)[1]
        return membrane.flatten(0, 1) if self.fold else membrane

    def extra_repr(self) -> str:
        return f"T={self.T}, fold={self.fold}, surrogate={self.surrogate.name}"


def unfold(x: torch.Tensor, T: int) -> torch.Tensor:
    """``[T*B, ...]`` -> ``[T, B, ...]``, with a clear error when the batch is not a multiple of ``T``."""
    if x.dim() == 0 or x.shape[0] % T:
        raise RuntimeError(f"a folded layer got a batch of {tuple(x.shape)}, not T*B with T={T}: the network does "
                           f"not map one time step at a time (does it loop over time itself?)")
    return x.unflatten(0, (T, -1))


class Integrator(nn.Module):
    """A non-spiking stateful layer (a leaky integrator readout) looped over time, state created per call."""

    def __init__(self, module: nn.Module, T: int, fold: bool) -> None:
        super().__init__()
        self.module, self.T, self.fold = module, T, fold

    def step(self, current: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """One step: ``(input, state or None)`` -> ``(output, new state)``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, state: Any = None) -> Any:
        """As :meth:`ForeignNeuron.forward`, without spikes."""
        if state is not None:
            raise RuntimeError(f"{type(self.module).__name__} was called with an explicit state: the network steps "
                               f"its layers through time itself, which spikeshield.adapters.wrap cannot wrap")
        seq = unfold(x, self.T) if self.fold else x
        outs, state = [], None
        for current in seq:
            out, state = self.step(current, state)
            outs.append(out)
        out = torch.stack(outs)
        return self.respond(out.flatten(0, 1) if self.fold else out)

    def respond(self, out: torch.Tensor) -> Any:
        """What the framework's module returns."""
        return out


class TwinLayer(nn.Module):
    """A :class:`ForeignNeuron` of the ANN twin: a rate activation (ReLU or the quantised clamp) on its input, in its
    framework's return convention; an :class:`Integrator` becomes the identity (as a synapse does in our twins)."""

    def __init__(self, layer: ForeignNeuron | Integrator, activation: nn.Module) -> None:
        super().__init__()
        self.activation = activation
        self.integrator = isinstance(layer, Integrator)
        self.respond = layer.respond if self.integrator else layer.respond_twin  # a method, not a child module

    def forward(self, x: torch.Tensor, state: Any = None) -> Any:  # noqa: D102
        return self.respond(x) if self.integrator else self.respond(self.activation(x), x)
