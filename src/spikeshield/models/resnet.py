"""Spiking ResNets with post-activation blocks: ``resnet19`` (tdBN, Zheng et al. AAAI 2021), ``sew_resnet19`` (the
RandHet-SNN code's SEW-ResNet19, METHODS 2) and ``resnet20`` (He et al.'s CIFAR ResNet-20, a transfer source of the
purification paper, METHODS 3). Pre-activation networks (SENet18, DS-ResNet14, WRN-16-8) are in
:mod:`spikeshield.models.preact`.

ResNet-19s: a conv3x3-BN-neuron stem of 128 channels, BasicBlock stages of [3, 3, 2] blocks with 128 / 256 / 512
channels (stride 2 at the first block of stages 2 and 3), global average pooling, then the readout per step.
ResNet-20: a 16-channel stem and three stages of 3 blocks with 16 / 32 / 64 channels. ``width`` scales every
channel count (e.g. 0.25 for a CPU-sized network).

- ``resnet19``, ``resnet20``: block ``sn(BN(conv(sn(BN(conv(x))))) + shortcut(x))`` (neuron after the addition),
  shortcut the identity or conv1x1-BN; ResNet-19 has an FC-256 hidden layer with a neuron before the readout, as
  tdBN's ResNet-19.
- ``sew_resnet19``: block ``sn(BN(conv(sn(BN(conv(x)))))) + shortcut(x)`` (SEW ADD: spikes are added), shortcut
  the identity or conv1x1-BN-neuron; the readout straight after pooling.
"""

from __future__ import annotations

import torch
from torch import nn

from spikeshield.data.info import DatasetInfo
from spikeshield.models.layers import Parts, TimeFold
from spikeshield.models.registry import register_model

Stages = tuple[tuple[int, int, int], ...]

#: (blocks, channels, stride of the first block) per stage
STAGES: Stages = ((3, 128, 1), (3, 256, 2), (2, 512, 2))
RESNET20_STAGES: Stages = ((3, 16, 1), (3, 32, 2), (3, 64, 2))


def scaler(width: float):
    """``c -> max(1, round(c * width))``, the channel count under the multiplier ``width`` (checked > 0)."""
    if not width > 0:
        raise ValueError(f"width (channel multiplier) must be > 0; got {width!r}")
    return lambda c: max(1, round(c * width))


def _out_size(size: int, stride: int) -> int:
    """Spatial size after a padded 3x3 (or 1x1) convolution with ``stride``."""
    return (size - 1) // stride + 1


class SpikingBasicBlock(nn.Module):
    """A residual block on ``[T, B, C, H, W]``: two conv3x3-BN layers with neurons, and a shortcut.

    ``sew=True`` adds the block's spikes to the shortcut's (SEW ADD); otherwise the neuron follows the addition.
    """

    def __init__(self, channels_in: int, channels: int, stride: int, size_in: int, parts: Parts, sew: bool) -> None:
        super().__init__()
        size = _out_size(size_in, stride)
        shape = (channels, size, size)
        self.sew = sew
        self.conv1 = TimeFold(nn.Conv2d(channels_in, channels, 3, stride, 1, bias=False), nn.BatchNorm2d(channels))
        self.sn1 = parts.activation(shape)
        self.conv2 = TimeFold(nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels))
        self.sn2 = parts.activation(shape)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels:
            down = TimeFold(nn.Conv2d(channels_in, channels, 1, stride, bias=False), nn.BatchNorm2d(channels))
            self.shortcut = nn.Sequential(down, parts.activation(shape)) if sew else down

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = self.conv2(self.sn1(self.conv1(x)))
        if self.sew:
            return self.sn2(out) + self.shortcut(x)
        return self.sn2(out + self.shortcut(x))


def resnet_body(info: DatasetInfo, parts: Parts, width: float, sew: bool, stages: Stages = STAGES,
                hidden: int | None = 256) -> nn.Sequential:
    """A post-activation ResNet body for ``info``'s images: the stem takes the first stage's width, ``stages`` of
    blocks follow, then pooling, an optional FC ``hidden`` layer with a neuron, and the readout; ``width`` scales
    the channel counts (> 0)."""
    scaled = scaler(width)
    stem = scaled(stages[0][1])
    size = info.size
    layers: list[nn.Module] = [TimeFold(nn.Conv2d(info.channels, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem)),
                               parts.activation((stem, size, size))]
    channels = stem
    for blocks, base, stride in stages:
        for i in range(blocks):
            s = stride if i == 0 else 1
            layers.append(SpikingBasicBlock(channels, scaled(base), s, size, parts, sew))
            channels, size = scaled(base), _out_size(size, s)
    pool = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if hidden is None:
        layers.append(TimeFold(*pool, nn.Linear(channels, info.num_classes)))
    else:
        layers += [TimeFold(*pool, nn.Linear(channels, scaled(hidden))), parts.activation((scaled(hidden),)),
                   TimeFold(nn.Linear(scaled(hidden), info.num_classes))]
    return nn.Sequential(*layers)


@register_model("resnet19")
def resnet19(info: DatasetInfo, parts: Parts, width: float = 1.0) -> nn.Sequential:
    """ResNet-19 (tdBN): neuron after each residual addition, FC-256 before the readout."""
    return resnet_body(info, parts, width, sew=False)


@register_model("sew_resnet19")
def sew_resnet19(info: DatasetInfo, parts: Parts, width: float = 1.0) -> nn.Sequential:
    """SEW-ResNet19 (RandHet-SNN's network): spikes added at each block (SEW ADD), readout after pooling."""
    return resnet_body(info, parts, width, sew=True, hidden=None)


@register_model("resnet20")
def resnet20(info: DatasetInfo, parts: Parts, width: float = 1.0) -> nn.Sequential:
    """ResNet-20 (He et al. 2016, CIFAR): 3 stages of 3 blocks, 16 / 32 / 64 channels, neuron after the addition."""
    return resnet_body(info, parts, width, sew=False, stages=RESNET20_STAGES, hidden=None)
