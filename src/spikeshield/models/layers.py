"""Layers shared by the model files: time folding and the per-model choice of spiking or ANN parts."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from spikeshield.neurons.mlf import MLFParameters
from spikeshield.neurons.registry import make_neuron
from spikeshield.neurons.synapse import PSC


class TimeFold(nn.Sequential):
    """Stateless layers applied to ``[T, B, ...]`` with T folded into the batch (DESIGN 5)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        return super().forward(x.flatten(0, 1)).unflatten(0, (T, B))


class SumPool2d(nn.Module):
    """2x2 sum pooling scaled by ``scale`` (HoSNN's LeNet pools PSCs this way with scale 1.1)."""

    def __init__(self, kernel: int = 2, scale: float = 1.1) -> None:
        super().__init__()
        self.kernel, self.scale = kernel, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.kernel) * (self.kernel**2 * self.scale)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, scale={self.scale}"


class _StraightThroughFloor(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.floor(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad


class QuantisedClamp(nn.Module):
    """``floor(clamp(x, 0, high) * levels) / levels`` with a straight-through floor (the RGA / HART code's ANN
    activation: 8 levels per unit of output, ``high = 1`` for a spike, ``K`` for a K-level MLF neuron)."""

    def __init__(self, levels: int = 8, high: float = 1.0) -> None:
        super().__init__()
        self.levels, self.high = levels, high

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return _StraightThroughFloor.apply(x.clamp(0, self.high) * self.levels) / self.levels

    def extra_repr(self) -> str:
        return f"levels={self.levels}, high={self.high}"


@dataclass
class Parts:
    """Builds the activation and synapse layers of a model, so one model file yields the SNN and its ANN twin.

    In the ANN twin every spiking neuron becomes a ReLU (``ann=True`` or ``"relu"``) or a quantised clamp
    (``"clamp"``) and every synapse the identity; all shapes stay the same.
    """

    neuron: str = "lif"
    neuron_params: dict = field(default_factory=dict)
    ann: bool | str = False
    tau_s: float | None = None
    steps: int = 1

    def activation(self, shape: tuple[int, ...]) -> nn.Module:
        """A neuron layer (with the model's synapse) for per-sample activations of ``shape``; ReLU in the ANN twin."""
        if self.ann == "clamp":
            return QuantisedClamp(high=self._spike_max())
        if self.ann:
            return nn.ReLU()
        return make_neuron(self.neuron, tuple(shape), self._psc(), self.steps, **self.neuron_params)

    def _spike_max(self) -> float:
        """The largest output of one neuron in one step: K for a K-level MLF neuron, else 1."""
        return float(MLFParameters(**self.neuron_params).levels) if self.neuron == "mlf" else 1.0

    def input_filter(self) -> nn.Module:
        """The synapse filter applied to the input frames, or the identity."""
        return self._psc() or nn.Identity()

    def _psc(self) -> PSC | None:
        return PSC(self.tau_s) if self.tau_s is not None and not self.ann else None
