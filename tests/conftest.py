"""Shared fixtures: real FashionMNIST test images, a LeNet SNN briefly trained on them, a tiny fake model."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikeshield.data import batches, load_dataset
from spikeshield.data.info import DatasetInfo
from spikeshield.models import create_model


class TinyNet(nn.Module):
    """A linear classifier that looks like a spikeshield model (``info``, ``is_stochastic``).

    For property tests over random shapes and exact EOT checks, where a real model cannot take the inputs.
    ``noise > 0`` adds uniform noise to the input in every forward pass (a stochastic model).
    """

    def __init__(self, channels: int = 1, size: int = 4, classes: int = 3, noise: float = 0.0) -> None:
        super().__init__()
        self.info = DatasetInfo("tiny", channels, size, classes, (0.5,) * channels, (0.5,) * channels)
        self.fc = nn.Linear(channels * size * size, classes)
        self.noise = noise

    @property
    def is_stochastic(self) -> bool:
        return self.noise > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.noise:
            x = x + self.noise * torch.rand_like(x)
        return self.fc(torch.tanh(3 * x).flatten(1))


@pytest.fixture(scope="session")
def fmnist_test():
    """The real FashionMNIST test split (from the Debian package or the cache)."""
    return load_dataset("fashion_mnist", "test")


@pytest.fixture(scope="session")
def fmnist_batch(fmnist_test):
    """16 real FashionMNIST test images in [0, 1] and their labels."""
    x = fmnist_test.images[:16].float() / 255
    return x, fmnist_test.labels[:16].clone()


@pytest.fixture(scope="session")
def fmnist_eval(fmnist_test):
    """64 real FashionMNIST test images in [0, 1] and their true labels (for accuracy checks)."""
    x = fmnist_test.images[:64].float() / 255
    return x, fmnist_test.labels[:64].clone()


@pytest.fixture(scope="session")
def trained_lenet() -> nn.Module:
    """A LeNet SNN (LIF, direct coding, T = 2) trained for 40 Adam steps (2560 real FashionMNIST training images).

    Seeded and deterministic on CPU; returned in eval mode. It classifies about 70% of ``fmnist_eval`` correctly.
    Session-scoped and shared: tests must not change it (the attack tests check that attacks do not).
    """
    train = load_dataset("fashion_mnist", "train")
    torch.manual_seed(0)
    model = create_model("lenet", dataset="fashion_mnist", T=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for x, y in itertools.islice(batches(train, 64, shuffle=True, seed=0), 40):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
