"""SNN-RAT style VGGs (METHODS 4): conv3x3 - BN - spiking neuron blocks with 2x2 average pooling,
then ``FC4096 - FC4096`` hidden layers and a linear readout per step. ``width`` scales the channel counts and
``hidden`` sets the FC width (a CPU-sized VGG-5: ``width=0.25, hidden=1024``)."""

from __future__ import annotations

from torch import nn

from spikeshield.data.info import DatasetInfo
from spikeshield.models.layers import Parts, TimeFold
from spikeshield.models.registry import register_model

CONFIGS: dict[str, list[int | str]] = {
    "vgg5": [64, "A", 128, 128, "A"],
    "vgg9": [64, 64, "A", 128, 128, "A", 256, 256, 256, "A"],
    "vgg11": [64, "A", 128, 256, "A", 512, 512, 512, "A", 512, 512],
    "vgg16": [64, 64, "A", 128, 128, "A", 256, 256, 256, "A", 512, 512, 512, "A", 512, 512, 512, "A"],
}


def vgg(layout: list[int | str], info: DatasetInfo, parts: Parts, hidden: int = 4096,
        width: float = 1.0) -> nn.Sequential:
    """Build a VGG body from a layout of channel counts (times ``width``) and ``"A"`` (average pool)."""
    if not width > 0:
        raise ValueError(f"width (channel multiplier) must be > 0; got {width!r}")
    if not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"hidden (FC width) must be a positive integer; got {hidden!r}")
    layers: list[nn.Module] = []
    channels, size, pending = info.channels, info.size, []
    for item in layout:
        if item == "A":
            pending.append(nn.AvgPool2d(2))
            size //= 2
            if size < 1:
                raise ValueError(f"{info.size}px {info.name} images are too small for this VGG's {layout.count('A')} "
                                 f"pooling stages; use a smaller VGG or larger images")
            continue
        item = max(1, round(item * width))
        pending += [nn.Conv2d(channels, item, 3, padding=1, bias=False), nn.BatchNorm2d(item)]
        layers += [TimeFold(*pending), parts.activation((item, size, size))]
        channels, pending = item, []
    features = channels * size * size
    layers += [
        TimeFold(*pending, nn.Flatten(), nn.Linear(features, hidden)),
        parts.activation((hidden,)),
        TimeFold(nn.Linear(hidden, hidden)),
        parts.activation((hidden,)),
        TimeFold(nn.Linear(hidden, info.num_classes)),
    ]
    return nn.Sequential(*layers)


def _register(name: str) -> None:
    def build(info: DatasetInfo, parts: Parts, hidden: int = 4096, width: float = 1.0) -> nn.Sequential:
        return vgg(CONFIGS[name], info, parts, hidden, width)

    build.__doc__ = (f"{name.upper()} body: {CONFIGS[name]} (channels times width), then FC{{hidden}}-FC{{hidden}}-"
                     f"classes.")
    register_model(name)(build)


for _name in CONFIGS:
    _register(_name)
