"""The model every spikeshield network is: pixel images in, class scores out (DESIGN 4 and 5)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spikeshield.data.info import DatasetInfo
from spikeshield.encoding import Encoder
from spikeshield.validation import check_images


class SpikingModel(nn.Module):
    """Encoder -> normalisation -> time-stepped body -> per-step class scores.

    ``model(x)`` takes ``x`` ``[B, C, H, W]`` in [0, 1] and returns ``[B, classes]``, the mean over time of
    ``model.forward_steps(x)`` (``[T, B, classes]``). ``config`` holds the :func:`create_model` arguments that
    rebuild it (checkpoints store it). ``is_stochastic`` says whether repeated calls may differ.
    """

    def __init__(self, body: nn.Sequential, info: DatasetInfo, encoder: Encoder, T: int, config: dict[str, Any]):
        super().__init__()
        self.body, self.info, self.encoder, self.T, self.config = body, info, encoder, T, config
        shape = (1, 1, info.channels, 1, 1)
        self.register_buffer("mean", torch.tensor(info.mean).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(info.std).view(shape), persistent=False)

    @property
    def is_stochastic(self) -> bool:
        """True if the encoder or any neuron draws random numbers in the forward pass."""
        return any(getattr(m, "is_stochastic", False) for m in self.modules() if m is not self)

    @property
    def num_classes(self) -> int:
        """Number of output classes."""
        return self.info.num_classes

    def forward_steps(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step class scores ``[T, B, classes]`` for images ``x`` ``[B, C, H, W]`` in [0, 1]."""
        check_images(x, self.info.channels, self.info.size, self.info.name)
        frames = self.encoder(x, self.T)
        if self.encoder.normalize:
            frames = (frames - self.mean) / self.std
        return self.body(frames)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores ``[B, classes]``: the time average of :meth:`forward_steps`."""
        return self.forward_steps(x).mean(0)
