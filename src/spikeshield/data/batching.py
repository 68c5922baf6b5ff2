"""Deterministic mini-batches: epoch order from ``(seed, epoch)``, batched augmentation, no global RNG.

``epoch_indices`` is the single place that decides which samples an epoch visits, in which order; a distributed
run replaces it with a rank-aware version (each rank taking its own slice of the same permutation).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from spikeshield.data.dataset import ImageDataset
from spikeshield.data.info import DatasetInfo

_ORDER_STREAM, _AUGMENT_STREAM = 0, 1


@dataclass(frozen=True)
class Augment:
    """Standard train-time augmentation: random crop after zero padding by ``pad`` pixels, optional h-flip."""

    pad: int
    flip: bool


# Digits and clothing are not mirror-symmetric classes (a flipped "2" or shoe is another image): crop only.
DEFAULT_AUGMENT: dict[str, Augment] = {
    "fashion_mnist": Augment(pad=2, flip=False),
    "mnist": Augment(pad=2, flip=False),
    "svhn": Augment(pad=4, flip=False),
    "cifar10": Augment(pad=4, flip=True),
    "cifar100": Augment(pad=4, flip=True),
    "tiny_imagenet": Augment(pad=4, flip=True),
    "imagenet": Augment(pad=28, flip=True),
}


def default_augment(info: DatasetInfo) -> Augment:
    """Return the dataset's standard augmentation; unknown datasets get flips and a pad of about 1/8 of the side."""
    if info.name in DEFAULT_AUGMENT:
        return DEFAULT_AUGMENT[info.name]
    return Augment(pad=2 if info.size < 32 else 4 if info.size <= 64 else info.size // 8, flip=True)


def make_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """Return a CPU ``torch.Generator`` seeded from ``(seed, epoch, stream)``; global RNG state is never touched."""
    digest = hashlib.sha256(f"spikeshield:{seed}:{epoch}:{stream}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def epoch_indices(n: int, shuffle: bool, seed: int, epoch: int) -> torch.Tensor:
    """Return the int64 sample order of one epoch: ``0..n-1``, or a permutation fixed by ``(seed, epoch)``."""
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=make_generator(seed, epoch, _ORDER_STREAM))


def num_batches(dataset: ImageDataset | int, batch_size: int, drop_last: bool = False) -> int:
    """Return how many batches :func:`batches` yields for ``dataset`` (or a sample count)."""
    n = dataset if isinstance(dataset, int) else len(dataset)
    _check_batch_size(batch_size)
    return n // batch_size if drop_last else -(-n // batch_size)


def augment_batch(images: torch.Tensor, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """Randomly crop (after zero padding) and maybe flip each image of ``[B, C, H, W]``, any dtype, batched."""
    b, c, h, w = images.shape
    p = augment.pad
    if p > 0:
        padded = images.new_zeros((b, c, h + 2 * p, w + 2 * p))
        padded[:, :, p : p + h, p : p + w] = images
        dy, dx = torch.randint(0, 2 * p + 1, (2, b), generator=generator)
        rows = (dy[:, None] + torch.arange(h))[:, :, None]  # [B, H, 1]
        cols = (dx[:, None] + torch.arange(w))[:, None, :]  # [B, 1, W]
        # Advanced indices around a slice put their broadcast dims first: [B, H, W, C].
        images = padded[torch.arange(b)[:, None, None], :, rows, cols].permute(0, 3, 1, 2).contiguous()
    if augment.flip:
        flip = torch.rand(b, generator=generator) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    return images


def batches(
    dataset: ImageDataset,
    batch_size: int,
    shuffle: bool = False,
    augment: bool | Augment = False,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` mini-batches: x float32 ``[B, C, H, W]`` in ``[0, 1]``, y int64 ``[B]``.

    The order comes from :func:`epoch_indices` and the augmentation (``True``: the dataset's
    :func:`default_augment`, or an explicit :class:`Augment`) from a local generator, both fixed by
    ``(seed, epoch)``: the same arguments give the same batches, and toggling ``augment`` leaves the order alone.
    In-memory datasets are indexed as whole uint8 tensors; lazy ones decode their files per batch.
    """
    _check_batch_size(batch_size)
    spec = default_augment(dataset.info) if augment is True else augment or None
    generator = make_generator(seed, epoch, _AUGMENT_STREAM) if spec else None
    order = epoch_indices(len(dataset), shuffle, seed, epoch)
    for start in range(0, num_batches(dataset, batch_size, drop_last) * batch_size, batch_size):
        index = order[start : start + batch_size]
        images = dataset.gather(index)
        if spec is not None:
            images = augment_batch(images, spec, generator)
        yield images.float().div_(255), dataset.labels[index]


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
