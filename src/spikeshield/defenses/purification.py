"""Image purification (METHODS 3): a spiking denoiser in front of the classifier.

The :class:`Purifier` follows CBDNet's layout (the paper gives none; its "4 million parameters" matches CBDNet's
4.4M) with LIF activations over T steps and no batch norm:

- noise-level estimator: five conv3x3 layers ``C -> 32 -> 32 -> 32 -> 32 -> C`` with neurons after the first
  four, giving ``sigma_hat`` per pixel;
- non-blind denoiser: a residual U-Net on ``concat(x, sigma_hat)``: 2 x conv64, avgpool, 3 x conv128, avgpool,
  6 x conv256, transposed conv (2, stride 2) added to the conv128 features, 3 x conv128, transposed conv added to
  the conv64 features, 2 x conv64, conv1x1 -> C; ``x_hat = x + residual``.

Analog read-out (not given by the paper; **[inferred]**): the images enter as direct coding (the same frame at
every step) and both analog outputs, ``sigma_hat`` and the residual, are the time mean of the last layer's output
current (the last conv has no neuron after it). The purified image is clamped to [0, 1], the classifier's input
range; training losses see the unclamped ``x_hat``. Weights are He-initialised except the U-Net's last conv, which
starts at zero so that an untrained purifier is the identity **[inferred]**.

The losses of eqs. 7-10: :func:`charbonnier`, :func:`reconstruction` (``L_rec``), :func:`asymmetric` and
:func:`total_variation`; :func:`purification_loss` combines them. The trainer learns them through the ``denoise``
objective (``spikeshield.training.objectives``), on adversarial examples of the frozen classifier.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spikeshield.data.info import dataset_info
from spikeshield.models.layers import Parts, TimeFold
from spikeshield.models.registry import _plain, init_weights, register_builder
from spikeshield.models.resnet import scaler
from spikeshield.validation import check_images


def _convs(channels_in: int, channels: int, count: int, size: int, parts: Parts) -> list[nn.Module]:
    """``count`` conv3x3 layers with a neuron after each (``[T, B, C, H, W]``)."""
    layers: list[nn.Module] = []
    for _ in range(count):
        layers += [TimeFold(nn.Conv2d(channels_in, channels, 3, 1, 1)), parts.activation((channels, size, size))]
        channels_in = channels
    return layers


class Purifier(nn.Module):
    """The spiking denoiser: images ``[B, C, H, W]`` in [0, 1] -> purified images of the same shape (see the module
    docstring). ``width`` scales every channel count; ``T`` is the number of time steps. Build it by name with
    :func:`~spikeshield.models.build_model` (``{"name": "purifier", ...}``) or :func:`purifier`."""

    def __init__(self, info, parts: Parts, T: int, width: float, config: dict[str, Any]) -> None:
        super().__init__()
        if info.size % 4:
            raise ValueError(f"the purifier's U-Net pools twice: image size must be a multiple of 4; {info.name} "
                             f"images are {info.size}x{info.size}")
        self.info, self.T, self.config = info, T, config
        c, size, w = info.channels, info.size, scaler(width)
        self.estimator = nn.Sequential(*_convs(c, w(32), 4, size, parts), TimeFold(nn.Conv2d(w(32), c, 3, 1, 1)))
        self.enc1 = nn.Sequential(*_convs(2 * c, w(64), 2, size, parts))
        self.enc2 = nn.Sequential(TimeFold(nn.AvgPool2d(2)), *_convs(w(64), w(128), 3, size // 2, parts))
        self.middle = nn.Sequential(TimeFold(nn.AvgPool2d(2)), *_convs(w(128), w(256), 6, size // 4, parts))
        self.up2 = TimeFold(nn.ConvTranspose2d(w(256), w(128), 2, 2))
        self.dec2 = nn.Sequential(*_convs(w(128), w(128), 3, size // 2, parts))
        self.up1 = TimeFold(nn.ConvTranspose2d(w(128), w(64), 2, 2))
        self.dec1 = nn.Sequential(*_convs(w(64), w(64), 2, size, parts), TimeFold(nn.Conv2d(w(64), c, 1)))

    @property
    def is_stochastic(self) -> bool:
        """True if any neuron draws random numbers in the forward pass."""
        return any(getattr(m, "is_stochastic", False) for m in self.modules() if m is not self)

    def denoise(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_hat, sigma_hat)`` for images ``x`` ``[B, C, H, W]``: the unclamped purified images and the estimated
        noise level per pixel (time means of the last layers' output currents)."""
        check_images(x, self.info.channels, self.info.size, self.info.name)
        frames = x.unsqueeze(0).expand(self.T, *x.shape)
        sigma = self.estimator(frames).mean(0)
        features1 = self.enc1(torch.cat([frames, sigma.unsqueeze(0).expand_as(frames)], dim=2))
        features2 = self.enc2(features1)
        up = self.dec2(self.up2(self.middle(features2)) + features2)
        residual = self.dec1(self.up1(up) + features1).mean(0)
        return x + residual, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Purified images ``[B, C, H, W]``, clamped to [0, 1]."""
        return self.denoise(x)[0].clamp(0, 1)


@register_builder("purifier")
def purifier(name: str = "purifier", dataset: str = "fashion_mnist", neuron: str = "lif", T: int = 4,
             ann: bool | str = False, neuron_params: dict[str, Any] | None = None, width: float = 1.0,
             encoder: str = "direct", synapse: float | str | None = None,
             encoder_params: dict[str, Any] | None = None) -> Purifier:
    """Build a :class:`Purifier` for ``dataset`` with ``neuron`` activations over ``T`` steps (``ann``: its ANN twin,
    ReLU or the quantised clamp, T = 1). It takes :func:`~spikeshield.models.create_model`'s arguments so configs
    and checkpoints treat it like any model; it codes images directly and has no synapse filter.

    >>> p = purifier(dataset="fashion_mnist", T=4, width=0.25)
    >>> p(torch.rand(2, 1, 28, 28)).shape
    torch.Size([2, 1, 28, 28])
    """
    if encoder != "direct" or encoder_params:
        raise ValueError(f"the purifier codes images directly; encoder {encoder!r} is not available for it")
    if synapse not in (None, "default"):
        raise ValueError(f"the purifier has no synapse filter; got synapse={synapse!r}")
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T (time steps) must be a positive integer; got {T!r}")
    if ann not in (False, True, "relu", "clamp"):
        raise ValueError(f"ann must be False, True / 'relu' or 'clamp'; got {ann!r}")
    info = dataset_info(dataset)
    neuron_params = _plain(neuron_params or {})
    steps = 1 if ann else T
    parts = Parts(neuron=neuron, neuron_params=neuron_params, ann=ann, steps=steps)
    config = dict(name=name, dataset=info.name, neuron=neuron, T=steps, ann=ann, neuron_params=neuron_params,
                  width=width)
    model = Purifier(info, parts, steps, width, config)
    init_weights(model)
    if not model.dec1[-1][0].weight.is_meta:  # a config check builds on the meta device: nothing to calibrate
        calibrate(model, torch.rand(16, info.channels, info.size, info.size))
    nn.init.zeros_(model.dec1[-1][0].weight)  # the residual starts at 0: an untrained purifier is the identity
    return model


@torch.no_grad()
def calibrate(model: Purifier, x: torch.Tensor, target: float = 1.0) -> None:
    """Scale every hidden conv's weights so its output current has standard deviation ``target`` on images ``x``
    (one forward pass, layer by layer in order, as LSUV init). Without it the He-initialised spiking U-Net, which has
    no batch norm, falls silent from its fifth neuron layer on (measured: no spikes in the 6 x conv256 block at
    widths 1/8 and 1/4), and a silent layer passes no gradient."""
    outputs = {id(model.estimator[-1]), id(model.dec1[-1])}

    def rescale(fold: TimeFold, inputs, output: torch.Tensor) -> torch.Tensor:
        std, conv = output.std(), fold[0]
        if std > 0:
            conv.weight.mul_(target / std)
            if conv.bias is not None:
                conv.bias.mul_(target / std)
            return output * (target / std)
        return output

    hooks = [m.register_forward_hook(rescale) for m in model.modules()
             if isinstance(m, TimeFold) and id(m) not in outputs and isinstance(m[0], (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        model.denoise(x)
    finally:
        for hook in hooks:
            hook.remove()


# ------------------------------------------------------------------------------------------------ losses
def charbonnier(x_hat: torch.Tensor, x: torch.Tensor, c: float = 1e-3) -> torch.Tensor:
    """Charbonnier loss (eq. 7), per pixel and averaged: ``mean(sqrt((x_hat - x)^2 + c^2))``."""
    return torch.sqrt((x_hat - x).pow(2) + c * c).mean()


def reconstruction(x_hat: torch.Tensor, x: torch.Tensor, beta: float = 0.5, c: float = 1e-3) -> torch.Tensor:
    """``L_rec = beta * Charbonnier + (1 - beta) * MSE`` (eq. 9)."""
    return beta * charbonnier(x_hat, x, c) + (1 - beta) * (x_hat - x).pow(2).mean()


def asymmetric(sigma_hat: torch.Tensor, sigma: torch.Tensor, gamma: float = 0.3) -> torch.Tensor:
    """Asymmetric noise-level loss (eq. 8), pixel mean of ``|gamma - 1[sigma_hat < sigma]| (sigma_hat - sigma)^2``:
    with ``gamma < 0.5`` an under-estimate costs ``1 - gamma``, an over-estimate ``gamma``."""
    under = (sigma_hat < sigma).to(sigma_hat.dtype)
    return ((gamma - under).abs() * (sigma_hat - sigma).pow(2)).mean()


def total_variation(sigma_hat: torch.Tensor) -> torch.Tensor:
    """Total variation of the estimated noise map ``[B, C, H, W]``: mean squared horizontal and vertical
    differences."""
    dh = (sigma_hat[..., 1:, :] - sigma_hat[..., :-1, :]).pow(2).mean()
    dw = (sigma_hat[..., :, 1:] - sigma_hat[..., :, :-1]).pow(2).mean()
    return dh + dw


def purification_loss(x_hat: torch.Tensor, sigma_hat: torch.Tensor, x: torch.Tensor, x_noisy: torch.Tensor,
                      charbonnier_only: bool = False, beta: float = 0.5, gamma: float = 0.3, l_asym: float = 0.5,
                      l_tv: float = 0.05) -> torch.Tensor:
    """``L = L_rec + l_asym L_asym + l_TV L_TV`` (eq. 10), with Charbonnier in place of ``L_rec`` while
    ``charbonnier_only`` (early training). The true noise level is ``|x_noisy - x|`` per pixel."""
    if not (0 < gamma < 0.5 and 0 <= beta <= 1 and l_asym >= 0 and l_tv >= 0):
        raise ValueError(f"purification loss needs 0 < gamma < 0.5, 0 <= beta <= 1, l_asym, l_tv >= 0; got "
                         f"gamma={gamma}, beta={beta}, l_asym={l_asym}, l_tv={l_tv}")
    rec = charbonnier(x_hat, x) if charbonnier_only else reconstruction(x_hat, x, beta)
    sigma = (x_noisy - x).abs()
    return rec + l_asym * asymmetric(sigma_hat, sigma, gamma) + l_tv * total_variation(sigma_hat)
