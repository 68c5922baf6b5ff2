"""Spiking pre-activation ResNets: ``senet18`` (the purification paper's classifier), ``resnet14`` (the MLF paper's
DS-ResNet) and ``wrn16_8`` (a transfer source of the purification paper); METHODS 3.

Block (pre-activation, He et al. 2016; the MLF code's DS-ResNet order): ``a = sn(BN(x))``,
``out = conv(sn(BN(conv(a))))``, optionally scaled by squeeze-and-excitation, plus the shortcut (``x``, or a
conv1x1 of ``a`` where the shape changes). The residual stream stays analog; every conv sees spikes (or MLF levels).
Networks: a conv3x3 stem, the stages, then BN-neuron, global average pooling and the readout per step. ``width``
scales every channel count.

- ``senet18``: stages [2, 2, 2, 2], 64 / 128 / 256 / 512 channels, SE with reduction 16 in every block (Hu et al.
  2018): ``sigmoid(FC(ReLU(FC(avgpool(out)))))`` per channel and step, an analog gate as in SENet;
- ``resnet14``: stages [2, 2, 2], 64 / 128 / 256 channels (DS-ResNet-14, the MLF paper's MNIST network);
- ``wrn16_8``: WideResNet-16-8, a 16-channel stem and stages [2, 2, 2] of 128 / 256 / 512 channels.

The MLF code's tdBN (BN scaled by ``alpha * V_th``) is not reproduced: these use plain BN.
"""

from __future__ import annotations

import torch
from torch import nn

from spikeshield.data.info import DatasetInfo
from spikeshield.models.layers import Parts, TimeFold
from spikeshield.models.registry import register_model
from spikeshield.models.resnet import Stages, _out_size, scaler


class SqueezeExcitation(nn.Module):
    """Channel gate ``x * sigmoid(W2 ReLU(W1 avgpool(x)))`` on ``[N, C, H, W]`` (time folded into N)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, hidden), nn.ReLU(),
                                  nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x * self.gate(x)[:, :, None, None]


class PreActBlock(nn.Module):
    """A pre-activation residual block on ``[T, B, C, H, W]`` (module docstring), with SE if ``reduction``."""

    def __init__(self, channels_in: int, channels: int, stride: int, size_in: int, parts: Parts,
                 reduction: int | None) -> None:
        super().__init__()
        size = _out_size(size_in, stride)
        self.bn1 = TimeFold(nn.BatchNorm2d(channels_in))
        self.sn1 = parts.activation((channels_in, size_in, size_in))
        self.conv1 = TimeFold(nn.Conv2d(channels_in, channels, 3, stride, 1, bias=False), nn.BatchNorm2d(channels))
        self.sn2 = parts.activation((channels, size, size))
        second: list[nn.Module] = [nn.Conv2d(channels, channels, 3, 1, 1, bias=False)]
        if reduction:
            second.append(SqueezeExcitation(channels, reduction))
        self.conv2 = TimeFold(*second)
        self.shortcut = None
        if stride != 1 or channels_in != channels:
            self.shortcut = TimeFold(nn.Conv2d(channels_in, channels, 1, stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        a = self.sn1(self.bn1(x))
        out = self.conv2(self.sn2(self.conv1(a)))
        return out + (self.shortcut(a) if self.shortcut is not None else x)


def preact_body(info: DatasetInfo, parts: Parts, width: float, stem: int, stages: Stages,
                reduction: int | None) -> nn.Sequential:
    """A pre-activation ResNet body: conv3x3 stem of ``stem`` channels, ``stages`` of (blocks, channels, stride),
    BN-neuron, pooling and the readout; ``width`` scales the channel counts (> 0)."""
    scaled = scaler(width)
    channels, size = scaled(stem), info.size
    layers: list[nn.Module] = [TimeFold(nn.Conv2d(info.channels, channels, 3, 1, 1, bias=False))]
    for blocks, base, stride in stages:
        for i in range(blocks):
            s = stride if i == 0 else 1
            layers.append(PreActBlock(channels, scaled(base), s, size, parts, reduction))
            channels, size = scaled(base), _out_size(size, s)
    layers += [TimeFold(nn.BatchNorm2d(channels)), parts.activation((channels, size, size)),
               TimeFold(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, info.num_classes))]
    return nn.Sequential(*layers)


@register_model("senet18")
def senet18(info: DatasetInfo, parts: Parts, width: float = 1.0, reduction: int = 16) -> nn.Sequential:
    """SENet-18 (pre-activation, blocks [2, 2, 2, 2], 64-512 channels, SE reduction 16)."""
    return preact_body(info, parts, width, 64, ((2, 64, 1), (2, 128, 2), (2, 256, 2), (2, 512, 2)), reduction)


@register_model("resnet14")
def resnet14(info: DatasetInfo, parts: Parts, width: float = 1.0) -> nn.Sequential:
    """DS-ResNet-14 (the MLF paper's network): pre-activation blocks [2, 2, 2], 64 / 128 / 256 channels."""
    return preact_body(info, parts, width, 64, ((2, 64, 1), (2, 128, 2), (2, 256, 2)), None)


@register_model("wrn16_8")
def wrn16_8(info: DatasetInfo, parts: Parts, width: float = 1.0) -> nn.Sequential:
    """WideResNet-16-8: a 16-channel stem, pre-activation blocks [2, 2, 2] of 128 / 256 / 512 channels."""
    return preact_body(info, parts, width, 16, ((2, 128, 1), (2, 256, 2), (2, 512, 2)), None)
