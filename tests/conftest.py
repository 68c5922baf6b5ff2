"""Shared fixtures: a small batch of real FashionMNIST test images."""

import pytest
import torch

from spikeshield.data import load_dataset


@pytest.fixture(scope="session")
def fmnist_test():
    """The real FashionMNIST test split (from the Debian package or the cache)."""
    return load_dataset("fashion_mnist", "test")


@pytest.fixture(scope="session")
def fmnist_batch(fmnist_test):
    """16 real FashionMNIST test images in [0, 1] and their labels."""
    x = fmnist_test.images[:16].float() / 255
    return x, fmnist_test.labels[:16].clone()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
