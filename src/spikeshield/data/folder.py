"""Image folders (``root/<class>/**/<image>``), decoded lazily with PIL: the generic loader, Tiny-ImageNet, ImageNet."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch

from spikeshield.data.dataset import ImageDataset
from spikeshield.data.info import DatasetInfo

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".webp", ".tif", ".tiff"})
_DEFAULT_STATS = {1: ((0.5,), (0.5,)), 3: ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def list_classes(root: Path) -> list[str]:
    """Return the sorted class folder names under ``root``."""
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir())


def scan_image_folder(root: Path, classes: Sequence[str] | None = None) -> tuple[list[Path], list[int], list[str]]:
    """List the images of ``root/<class>/**`` with their class indices; ``classes`` fixes the class order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist; expected {root}/<class>/<image files>")
    classes = list(classes) if classes is not None else list_classes(root)
    paths: list[Path] = []
    labels: list[int] = []
    for index, cls in enumerate(classes):
        found = sorted(p for p in (root / cls).rglob("*") if _is_image(p))
        paths += found
        labels += [index] * len(found)
    if not paths:
        raise FileNotFoundError(
            f"no images found under {root}: expected {root}/<class>/<image>{{{','.join(sorted(IMAGE_EXTENSIONS))}}}"
        )
    return paths, labels, classes


def decode_image(path: Path, channels: int, size: int, resize: int | None = None) -> torch.Tensor:
    """Decode one image file to uint8 ``[channels, size, size]``.

    With ``resize``, the shorter side is scaled to ``resize`` and the centre ``size x size`` cropped out; without
    it the image must already be ``size x size``.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            if resize is not None and img.size != (size, size):
                w, h = img.size
                scale = resize / min(w, h)
                img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR)
                w, h = img.size
                left, top = (w - size) // 2, (h - size) // 2
                img = img.crop((left, top, left + size, top + size))
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path}: cannot decode image ({err}); delete or replace the file") from None
    if array.shape[:2] != (size, size):
        raise ValueError(
            f"{path}: image is {array.shape[1]}x{array.shape[0]}, expected {size}x{size}; pass size= (and resize=) "
            f"to resize images on load"
        )
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1)


def load_image_folder(
    path: Path | str,
    size: int | None = None,
    *,
    channels: int = 3,
    resize: int | None = None,
    classes: Sequence[str] | None = None,
    info: DatasetInfo | None = None,
    split: str = "train",
) -> ImageDataset:
    """Load ``path/<class>/**/<image>`` as a lazy :class:`ImageDataset` (images are decoded with PIL on access).

    ``size`` is the square side of the returned images; ``None`` takes it from ``info`` or else the first image,
    and then every image must have that size. Otherwise images of another size are resized (shorter side to
    ``resize``, default ``size``) and centre-cropped. Class indices follow sorted folder names unless ``classes``
    fixes them. ``info`` defaults to an ``"image_folder"`` record with ImageNet statistics (0.5/0.5 for grey images).
    """
    paths, labels, classes = scan_image_folder(Path(path), classes)
    if size is None and info is not None:
        size = info.size
    if size is None:
        from PIL import Image

        with Image.open(paths[0]) as first:
            w, h = first.size
        if w != h:
            raise ValueError(f"{paths[0]} is {w}x{h}, not square: pass size= to resize and centre-crop the images")
        size = w
    elif resize is None:
        resize = size
    if info is None:
        mean, std = _DEFAULT_STATS.get(channels, ((0.5,) * channels, (0.5,) * channels))
        info = DatasetInfo("image_folder", channels, size, len(classes), mean, std)
    decode = partial(decode_image, channels=info.channels, size=info.size, resize=resize)
    return ImageDataset(None, torch.tensor(labels), info, split=split, classes=classes, paths=paths, decode=decode)
