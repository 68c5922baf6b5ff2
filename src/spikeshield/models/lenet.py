"""The FashionMNIST LeNet of HoSNN (METHODS 1): ``32C5(pad 2)-P2-64C5(pad 2)-P2-1024-10``.

Each neuron layer's spikes pass a PSC filter (tau_s = 3; ``synapse=None`` in ``create_model``
for none); pooling is a 2x2 sum of PSCs scaled by
1.1; the input image passes the same PSC filter. The readout is the per-step output of the last linear layer.
"""

from __future__ import annotations

from torch import nn

from spikeshield.data.info import DatasetInfo
from spikeshield.models.layers import Parts, SumPool2d, TimeFold
from spikeshield.models.registry import register_model


@register_model("lenet", synapse=3.0)
def lenet(info: DatasetInfo, parts: Parts) -> nn.Sequential:
    """LeNet body on ``[T, B, C, H, W]`` frames -> ``[T, B, classes]``."""
    c, n = info.channels, info.size
    return nn.Sequential(
        parts.input_filter(),
        TimeFold(nn.Conv2d(c, 32, 5, padding=2)),
        parts.activation((32, n, n)),
        TimeFold(SumPool2d(2, 1.1), nn.Conv2d(32, 64, 5, padding=2)),
        parts.activation((64, n // 2, n // 2)),
        TimeFold(SumPool2d(2, 1.1), nn.Flatten(), nn.Linear(64 * (n // 4) ** 2, 1024)),
        parts.activation((1024,)),
        TimeFold(nn.Linear(1024, info.num_classes)),
    )
