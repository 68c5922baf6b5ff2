"""The one dataset type: labelled images of one split, stored as uint8 in memory or decoded lazily from files."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from spikeshield.data.info import DatasetInfo

Decoder = Callable[[Path], torch.Tensor]


class ImageDataset:
    """Labelled images of one dataset split; ``dataset[i]`` is ``(float image [C, H, W] in [0, 1], int label)``.

    Two storage kinds share one interface, :meth:`gather`, which :func:`spikeshield.data.batches` uses:

    - in memory: ``images`` is a uint8 tensor ``[N, C, H, W]`` (MNIST, CIFAR, SVHN, ...);
    - lazy: ``images`` is ``None``, ``paths`` holds one file per sample and ``decode(path)`` returns its uint8
      ``[C, H, W]`` tensor (image folders such as Tiny-ImageNet and ImageNet).

    ``labels`` is an int64 tensor ``[N]`` of class indices in ``[0, info.num_classes)``; ``classes`` names them.
    """

    def __init__(
        self,
        images: torch.Tensor | None,
        labels: torch.Tensor,
        info: DatasetInfo,
        *,
        name: str | None = None,
        split: str = "train",
        classes: Sequence[str] | None = None,
        paths: Sequence[Path] | None = None,
        decode: Decoder | None = None,
    ) -> None:
        labels = torch.as_tensor(labels, dtype=torch.int64)
        if labels.dim() != 1:
            raise ValueError(f"labels must have shape [N]; got {list(labels.shape)}")
        n = labels.shape[0]
        if images is None:
            if paths is None or decode is None:
                raise ValueError("a dataset without in-memory images needs both paths and decode (lazy loading)")
            if len(paths) != n:
                raise ValueError(f"got {len(paths)} image paths but {n} labels")
        else:
            expected = (info.channels, info.size, info.size)
            if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != expected:
                raise ValueError(
                    f"images must be a uint8 tensor [N, {info.channels}, {info.size}, {info.size}] ({info.name}); "
                    f"got {images.dtype} {list(images.shape)}"
                )
            if images.shape[0] != n:
                raise ValueError(f"got {images.shape[0]} images but {n} labels")
        if n and (int(labels.min()) < 0 or int(labels.max()) >= info.num_classes):
            raise ValueError(
                f"labels must lie in [0, {info.num_classes}) for {info.name}; got range "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )
        self.images = images
        self.labels = labels
        self.info = info
        self.name = name or info.name
        self.split = split
        self.classes = tuple(classes) if classes is not None else tuple(str(i) for i in range(info.num_classes))
        self.paths = list(paths) if paths is not None else None
        self.decode = decode

    @property
    def is_lazy(self) -> bool:
        """True when images are decoded from files on access instead of held in memory."""
        return self.images is None

    def __len__(self) -> int:
        return self.labels.shape[0]

    def gather(self, index: torch.Tensor) -> torch.Tensor:
        """Return the uint8 images ``[B, C, H, W]`` at the int64 positions ``index`` (decoding files if lazy)."""
        if self.images is not None:
            return self.images[index]
        assert self.paths is not None and self.decode is not None  # guaranteed by __init__
        info = self.info
        out = torch.empty((len(index), info.channels, info.size, info.size), dtype=torch.uint8)
        for row, i in enumerate(index.tolist()):
            out[row] = self.decode(self.paths[i])
        return out

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {self.name} ({self.split}) with {n} samples")
        i %= n
        image = self.gather(torch.tensor([i]))[0]
        return image.float().div_(255), int(self.labels[i])

    def subset(self, indices: Sequence[int] | torch.Tensor) -> ImageDataset:
        """Return the samples at ``indices`` as a new dataset (in-memory data is indexed, not re-read)."""
        index = torch.as_tensor(indices, dtype=torch.int64)
        return ImageDataset(
            None if self.images is None else self.images[index],
            self.labels[index],
            self.info,
            name=self.name,
            split=self.split,
            classes=self.classes,
            paths=None if self.paths is None else [self.paths[i] for i in index.tolist()],
            decode=self.decode,
        )

    def __repr__(self) -> str:
        info = self.info
        kind = "lazy" if self.is_lazy else "in memory"
        return (
            f"ImageDataset({self.name!r}, split={self.split!r}, n={len(self)}, "
            f"shape=[{info.channels}, {info.size}, {info.size}], classes={info.num_classes}, {kind})"
        )
