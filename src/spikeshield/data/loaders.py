"""``load_dataset(name, split)``: find a dataset's files (explicit folder, system package, cache), fetch if allowed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from spikeshield.data.dataset import ImageDataset
from spikeshield.data.download import SOURCES, cache_dir, fetch
from spikeshield.data.folder import decode_image, list_classes, load_image_folder
from spikeshield.data.formats import load_pickle, read_cifar_batch, read_idx_pair, read_svhn_mat
from spikeshield.data.info import DatasetInfo, dataset_info
from spikeshield.validation import unknown_name

# Files of the Debian/Ubuntu package ``dataset-fashion-mnist`` (``apt install dataset-fashion-mnist``).
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

SPLITS = ("train", "test")

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DIGITS = tuple(str(i) for i in range(10))


@dataclass(frozen=True)
class _Request:
    """What one ``load_dataset`` call asked for, passed to the per-dataset loader."""

    name: str
    split: str
    data_dir: Path | None
    download: bool
    fetch_kwargs: dict

    @property
    def root(self) -> Path:
        """The folder to read (and download into): the explicit ``data_dir`` or the cache."""
        return self.data_dir if self.data_dir is not None else cache_dir(self.name)

    def missing(self, what: str, where: Path, extra: str = "") -> FileNotFoundError:
        """The error for absent files: what is missing, where it was looked for, and the ways to fix it."""
        fixes = [f"put the files in {where}"] if self.data_dir is not None else [f"pass data_dir=<folder with {what}>"]
        if self.name in SOURCES and self.data_dir is None and not self.download:
            fixes.append(f"allow download=True (downloads into {cache_dir(self.name)})")
        return FileNotFoundError(
            f"{self.name} ({self.split}): {what} not found in {where}{extra}. Fix: {'; or '.join(fixes)}"
        )

    def fetch(self) -> Path:
        """Download this split's official files into the cache and return the cache folder."""
        return fetch(self.name, self.split, self.root, **self.fetch_kwargs)


def _tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels.astype(np.int64))


# --- MNIST family (IDX) --------------------------------------------------------------------------------------------


def _idx_stems(split: str) -> tuple[str, str]:
    prefix = "train" if split == "train" else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _idx_paths(folder: Path, split: str) -> list[Path] | None:
    """The split's image and label files in ``folder`` (gzip preferred, raw accepted), or None if one is absent."""
    found = [
        next((p for p in (folder / f"{stem}.gz", folder / stem) if p.is_file()), None) for stem in _idx_stems(split)
    ]
    return None if None in found else found


def _load_idx(req: _Request, classes: tuple[str, ...]) -> ImageDataset:
    info = dataset_info(req.name)
    what = " and ".join(f"{stem}[.gz]" for stem in _idx_stems(req.split))
    if req.data_dir is not None:
        folders = [req.data_dir]
    else:
        folders = [DEBIAN_FASHION_MNIST_DIR] if req.name == "fashion_mnist" else []
        folders.append(cache_dir(req.name))
    paths = next((p for p in (_idx_paths(f, req.split) for f in folders) if p is not None), None)
    extra = " (nor in the Debian package dataset-fashion-mnist: apt install it)" if req.name == "fashion_mnist" else ""
    if paths is None and req.data_dir is None and req.download:
        try:
            paths = _idx_paths(req.fetch(), req.split)
        except FileNotFoundError as err:
            raise req.missing(what, folders[-1], f"{extra}, and the download failed: {err}") from err
    if paths is None:
        raise req.missing(what, folders[-1], extra)
    images, labels = read_idx_pair(paths[0], paths[1], info.num_classes)
    if images.shape[1:] != (info.size, info.size):
        raise ValueError(f"{paths[0]}: {req.name} images must be {info.size}x{info.size}, got {list(images.shape[1:])}")
    x, y = _tensors(images[:, None], labels)
    return ImageDataset(x, y, info, split=req.split, classes=classes)


# --- CIFAR-10/100 (python pickles) ---------------------------------------------------------------------------------

_CIFAR = {
    "cifar10": (
        "cifar-10-batches-py",
        {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
        "labels",
    ),
    "cifar100": ("cifar-100-python", {"train": ["train"], "test": ["test"]}, "fine_labels"),
}


def _load_cifar(req: _Request) -> ImageDataset:
    info = dataset_info(req.name)
    folder_name, files, label_key = _CIFAR[req.name]
    archive = SOURCES[req.name].files[req.split][0].filename

    def find(root: Path) -> Path | None:
        for folder in (root / folder_name, root):
            if all((folder / f).is_file() for f in files[req.split]):
                return folder
        return None

    folder = find(req.root)
    if folder is None and ((req.root / archive).is_file() or (req.download and req.data_dir is None)):
        folder = find(req.fetch())  # extracts an archive already present, downloads it otherwise
    if folder is None:
        raise req.missing(f"{folder_name}/{', '.join(files[req.split])} (or {archive})", req.root)
    parts = [read_cifar_batch(folder / f, label_key, info.num_classes) for f in files[req.split]]
    x, y = _tensors(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    classes = CIFAR10_CLASSES if req.name == "cifar10" else _cifar100_classes(folder)
    return ImageDataset(x, y, info, split=req.split, classes=classes)


def _cifar100_classes(folder: Path) -> tuple[str, ...] | None:
    meta = folder / "meta"
    if not meta.is_file():
        return None
    names = load_pickle(meta).get(b"fine_label_names")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names) if names else None


# --- SVHN (MATLAB) -------------------------------------------------------------------------------------------------


def _load_svhn(req: _Request) -> ImageDataset:
    filename = f"{req.split}_32x32.mat"
    path = req.root / filename
    if not path.is_file() and req.download and req.data_dir is None:
        req.fetch()
    if not path.is_file():
        raise req.missing(filename, req.root)
    x, y = _tensors(*read_svhn_mat(path))
    return ImageDataset(x, y, dataset_info("svhn"), split=req.split, classes=DIGITS)


# --- Image folders (Tiny-ImageNet, ImageNet) -----------------------------------------------------------------------


def _load_folder(req: _Request) -> ImageDataset:
    info = dataset_info(req.name)
    root = req.root
    train = root / "train"
    classes = list_classes(train) if train.is_dir() else None
    split_dir = (
        train if req.split == "train" else next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    )
    layout = f"{root}/train/<class>/<images> and {root}/val/<class>/<images>"
    if split_dir is None or not split_dir.is_dir():
        raise req.missing(f"the {req.split} image folder", root, f" (expected {layout}; these cannot be downloaded)")
    resize = 256 if req.name == "imagenet" else None  # ImageNet: shorter side 256, centre crop 224
    annotations = split_dir / "val_annotations.txt"
    if req.name == "tiny_imagenet" and annotations.is_file() and (split_dir / "images").is_dir():
        return _tiny_imagenet_val(split_dir, annotations, classes, info)
    return load_image_folder(split_dir, info=info, resize=resize, classes=classes, split=req.split)


def _tiny_imagenet_val(
    split_dir: Path, annotations: Path, classes: list[str] | None, info: DatasetInfo
) -> ImageDataset:
    """The official Tiny-ImageNet validation layout: ``val/images/*.JPEG`` labelled by ``val_annotations.txt``."""
    rows = [line.split("\t")[:2] for line in annotations.read_text().splitlines() if line.strip()]
    classes = classes if classes is not None else sorted({wnid for _, wnid in rows})
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({wnid for _, wnid in rows} - index.keys())
    if unknown:
        raise ValueError(f"{annotations}: classes {unknown[:5]} are not train folders; the dataset is incomplete")
    paths = [split_dir / "images" / f for f, _ in rows]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} annotated validation images are missing, e.g. {missing[0]}")
    labels = torch.tensor([index[w] for _, w in rows], dtype=torch.int64)
    decode = partial(decode_image, channels=info.channels, size=info.size, resize=info.size)
    return ImageDataset(None, labels, info, split="test", classes=classes, paths=paths, decode=decode)


_LOADERS: dict[str, Callable[[_Request], ImageDataset]] = {
    "fashion_mnist": lambda req: _load_idx(req, FASHION_MNIST_CLASSES),
    "mnist": lambda req: _load_idx(req, DIGITS),
    "cifar10": _load_cifar,
    "cifar100": _load_cifar,
    "svhn": _load_svhn,
    "tiny_imagenet": _load_folder,
    "imagenet": _load_folder,
}


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: Path | str | None = None,
    download: bool = True,
    *,
    base_url: str | None = None,
    checksums: Mapping[str, str] | None = None,
    progress: bool = True,
) -> ImageDataset:
    """Load one split (``"train"`` or ``"test"``) of a dataset as an :class:`ImageDataset`.

    Files are looked for in ``data_dir`` when given (and only there); otherwise, for FashionMNIST, in the Debian
    package ``dataset-fashion-mnist``, then in the cache (``$SPIKESHIELD_DATA/<name>`` or
    ``~/.cache/spikeshield/<name>``), downloading the official files there when ``download`` is true.
    ``base_url`` / ``checksums`` override the download mirror and the expected MD5/SHA-256 per file name.
    Tiny-ImageNet and ImageNet are image folders (``<root>/train/<class>/...``, ``<root>/val/<class>/...``)
    decoded lazily; they cannot be downloaded.
    """
    key = str(name).lower().replace("-", "_")
    if key not in _LOADERS:
        raise unknown_name("dataset", name, _LOADERS)
    if split not in SPLITS:
        raise unknown_name("split", split, SPLITS)
    fetch_kwargs = {"base_url": base_url, "checksums": checksums, "progress": progress}
    req = _Request(key, split, Path(data_dir).expanduser() if data_dir is not None else None, download, fetch_kwargs)
    return _LOADERS[key](req)
