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
from spikeshield.neurons import gradient_mode


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


def layer_grad(neuron, current, upstream, mode):
    """``(output, dL/dI)`` of one neuron layer for ``L = sum(out * upstream)`` under ``mode``."""
    current = current.clone().requires_grad_(True)
    with gradient_mode(mode):
        out = neuron(current)
        (g,) = torch.autograd.grad((out * upstream).sum(), current)
    return out.detach(), g


def fooled(model, x_adv, y) -> torch.Tensor:
    """Per-sample misclassification of ``x_adv``."""
    with torch.no_grad():
        return model(x_adv).argmax(1) != y


# --------------------------------------------------------------------------- a model with a closed-form optimum
def binary_problem(eps: float, noise: float = 0.0, batch: int = 8):
    """A 2-class TinyNet (logits ``W tanh(3x) + b``), images with pixels on the box's edges, and the exact optimum.

    The margin ``z_y - z_other = sum_i d_i tanh(3 x_i) + const`` (``d = w_y - w_other``) is monotone in every
    pixel, so its minimum over the eps-ball and [0, 1] is the corner ``x_i - eps`` (clipped at 0) where ``d_i > 0``
    and ``x_i + eps`` (clipped at 1) where ``d_i < 0``. For two classes cross-entropy is a decreasing function of the
    margin, so a CE attack that maximises its loss must reach that corner's margin.
    """
    g = torch.Generator().manual_seed(1)
    model = TinyNet(1, 4, 2, noise=noise)
    with torch.no_grad():
        model.fc.weight.copy_(torch.randn(2, 16, generator=g))
        model.fc.bias.zero_()
    x = torch.rand(batch, 1, 4, 4, generator=g)
    x[:, 0, 0, :2] = torch.tensor([0.0, 1.0])  # pixels on the box's edges
    x[:, 0, 1, :2] = torch.tensor([0.02, 0.99])  # pixels the box clips
    y = torch.arange(batch) % 2
    d = (model.fc.weight[y] - model.fc.weight[1 - y]).detach().view_as(x)
    x_star = torch.where(d > 0, (x - eps).clamp(min=0), torch.where(d < 0, (x + eps).clamp(max=1), x))
    return model, x, y, x_star


def margin(model: TinyNet, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Noise-free ``z_y - z_other`` ``[B]`` of a 2-class TinyNet."""
    with torch.no_grad():
        z = model.fc(torch.tanh(3 * x).flatten(1))
    return z.gather(1, y[:, None]).squeeze(1) - z.gather(1, (1 - y)[:, None]).squeeze(1)
