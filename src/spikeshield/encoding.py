"""Input coding: pixel images ``[B, C, H, W]`` in [0, 1] -> frames ``[T, B, C, H, W]`` (METHODS 0 and 4)."""

from __future__ import annotations

import torch
from torch import nn

from spikeshield.validation import unknown_name


class Encoder(nn.Module):
    """Base encoder. ``normalize``: whether the model normalises the frames (analog) or feeds them as spikes."""

    is_stochastic: bool = False
    normalize: bool = True

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        """Frames ``[T, B, C, H, W]`` for images ``x`` ``[B, C, H, W]``."""
        raise NotImplementedError


class Direct(Encoder):
    """Direct coding: the analog image repeated at every step."""

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        return x.unsqueeze(0).expand(T, *x.shape)


class Poisson(Encoder):
    """Rate coding ``s_t ~ Bernoulli(x)`` per pixel and step; the backward passes gradients straight through."""

    is_stochastic = True
    normalize = False

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        rates = x.unsqueeze(0).expand(T, *x.shape)
        spikes = (torch.rand_like(rates) < rates).to(x.dtype)
        return rates + (spikes - rates).detach()


class RSC(Encoder):
    """Randomized smoothing coding (RSC-SNN eqs. 7-10): ``clamp(x + n, 0, 1)``, ``n ~ N(0, std^2)`` in pixel space,
    then normalised by the model. A fresh draw at every call (every training iteration and every evaluation pass).

    ``fresh_each_step=False`` is RSC-I (one draw repeated over T), ``True`` is RSC-II (a draw per step). The paper
    names models by the variance: "RSC-0.1" is ``std = sqrt(0.1)``; the encoder names ``rsc1-0.1`` / ``rsc2-0.5``
    are these presets.
    """

    is_stochastic = True

    def __init__(self, std: float = 0.1**0.5, fresh_each_step: bool = False) -> None:
        super().__init__()
        if not std >= 0:
            raise ValueError(f"RSC noise std must be >= 0 (pixel units); got {std}")
        self.std, self.fresh_each_step = float(std), fresh_each_step

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        shape = (T, *x.shape) if self.fresh_each_step else (1, *x.shape)
        noise = torch.randn(shape, device=x.device, dtype=x.dtype) * self.std
        return (x.unsqueeze(0) + noise).clamp(0, 1).expand(T, *x.shape)

    @property
    def variance(self) -> float:
        """The noise variance ``std^2`` the paper names models by."""
        return self.std**2

    def extra_repr(self) -> str:
        return f"std={self.std}, fresh_each_step={self.fresh_each_step}"


ENCODERS = {
    "direct": Direct,
    "poisson": Poisson,
    "rsc1": lambda **kw: RSC(fresh_each_step=False, **kw),
    "rsc2": lambda **kw: RSC(fresh_each_step=True, **kw),
}


def encoder_spec(name: str) -> tuple[str, dict[str, float]]:
    """``(registered name, preset parameters)`` of an encoder name: a registered one (``rsc1``), or an RSC preset
    named by its variance as the paper does (``rsc1-0.1``: RSC-I with ``std = sqrt(0.1)``)."""
    if name in ENCODERS:
        return name, {}
    base, _, variance = str(name).partition("-")
    if base in ("rsc1", "rsc2") and variance:
        try:
            value = float(variance)
        except ValueError:
            value = -1.0
        if value >= 0:
            return base, {"std": value**0.5}
        raise ValueError(f"encoder {name!r}: the preset suffix is the noise variance, a number >= 0 (e.g. "
                         f"'{base}-0.1'); got {variance!r}")
    raise unknown_name("encoder", name, [*ENCODERS, "rsc1-<variance>", "rsc2-<variance>"])


def make_encoder(name: str, **params) -> Encoder:
    """Build an encoder by name: ``direct``, ``poisson``, ``rsc1``, ``rsc2`` (the RSC ones take ``std``, in pixel
    units), or an RSC preset by variance (``rsc1-0.1``, ``rsc2-0.5``; a ``std`` parameter may not override it).

    >>> make_encoder("rsc2-0.25")
    RSC(std=0.5, fresh_each_step=True)
    """
    base, preset = encoder_spec(name)
    if preset and params:
        raise ValueError(f"encoder {name!r} is a preset (variance in its name); give no encoder_params, or use "
                         f"{base!r} with encoder_params {{'std': ...}}")
    try:
        return ENCODERS[base](**preset, **params)
    except TypeError as e:
        raise ValueError(f"bad parameters for encoder {name!r}: {e}") from None
