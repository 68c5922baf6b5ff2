"""Surrogate derivatives of the Heaviside spike, dH(v)/dv with v = u - theta (METHODS 0).

The forward pass of a spike is always the exact step; only the backward uses one of these shapes. Each surrogate is
a small frozen record with a pure ``derivative(v)``, so a neuron's hand-written backward and the generic
``spike`` autograd function share one definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from spikeshield.validation import unknown_name


@dataclass(frozen=True)
class Surrogate:
    """Base record of a surrogate; subclasses define :meth:`derivative`."""

    def derivative(self, v: torch.Tensor) -> torch.Tensor:
        """Return the surrogate of dH/dv evaluated at ``v`` (same shape)."""
        raise NotImplementedError

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"surrogate {type(self).__name__}: {name} must be > 0, got {value}")


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    """Derivative of sigmoid(k v): ``k sig(kv)(1 - sig(kv))``. HoSNN uses k = 5."""

    k: float = 5.0

    def derivative(self, v: torch.Tensor) -> torch.Tensor:
        sig = torch.sigmoid(self.k * v)
        return torch.addcmul(sig, sig, sig, value=-1).mul_(self.k)


@dataclass(frozen=True)
class ArcTan(Surrogate):
    """``(alpha/2) / (1 + (pi alpha v / 2)^2)`` (Fang et al. 2021). RandHet-SNN uses alpha = 2."""

    alpha: float = 2.0

    def derivative(self, v: torch.Tensor) -> torch.Tensor:
        return (self.alpha / 2) / (1 + (math.pi / 2 * self.alpha * v) ** 2)


@dataclass(frozen=True)
class Triangle(Surrogate):
    """``max(gamma - |v|, 0) / gamma^2`` (RSC-SNN eq. 17, gamma = 1)."""

    gamma: float = 1.0

    def derivative(self, v: torch.Tensor) -> torch.Tensor:
        return (self.gamma - v.abs()).clamp_min(0) / self.gamma**2


@dataclass(frozen=True)
class Rectangle(Surrogate):
    """``1/a`` where ``|v| < a/2``, else 0 (STBP; MLF uses a = 1)."""

    a: float = 1.0

    def derivative(self, v: torch.Tensor) -> torch.Tensor:
        return (v.abs() < self.a / 2).to(v.dtype) / self.a


@dataclass(frozen=True)
class Exponential(Surrogate):
    """``a exp(-g |v|)`` (Özdenizci & Legenstein 2024's attacker surrogates: a in {0.3, 1}, g in {0.5, 1, 2})."""

    a: float = 1.0
    g: float = 1.0

    def derivative(self, v: torch.Tensor) -> torch.Tensor:
        return torch.exp(v.abs() * -self.g).mul_(self.a)


@dataclass(frozen=True)
class StraightThrough(Surrogate):
    """Identity backward: dH/dv taken as 1 everywhere (an attacker's gradient mode, METHODS 7)."""

    def derivative(self, v: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(v)


SURROGATES: dict[str, type[Surrogate]] = {
    "sigmoid": Sigmoid,
    "arctan": ArcTan,
    "triangle": Triangle,
    "rectangle": Rectangle,
    "exponential": Exponential,
    "straight_through": StraightThrough,
}


def make_surrogate(spec: str | Surrogate | dict, **params: float) -> Surrogate:
    """Build a surrogate from a name (``"triangle"``), a ``{"name": ..., param: ...}`` dict or an instance.

    >>> make_surrogate("triangle", gamma=0.5)
    Triangle(gamma=0.5)
    """
    if isinstance(spec, Surrogate):
        return spec
    if isinstance(spec, dict):
        params = {**{k: v for k, v in spec.items() if k != "name"}, **params}
        spec = spec.get("name", "")
    if spec not in SURROGATES:
        raise unknown_name("surrogate", spec, SURROGATES)
    try:
        return SURROGATES[spec](**params)
    except TypeError:
        fields = list(SURROGATES[spec].__dataclass_fields__)
        raise ValueError(f"surrogate {spec!r} takes parameters {fields}; got {sorted(params)}") from None


def surrogate_name(surrogate: Surrogate) -> str:
    """Registry name of a surrogate instance."""
    return next(name for name, cls in SURROGATES.items() if type(surrogate) is cls)
