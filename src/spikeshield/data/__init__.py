"""Datasets in pixel space: ``load_dataset(name, split)`` -> :class:`ImageDataset`; ``batches(...)`` -> ``(x, y)``.

Images come out as float ``[B, C, H, W]`` in ``[0, 1]`` (models normalise internally, with ``info.mean/std``).
"""

from spikeshield.data.batching import (
    DEFAULT_AUGMENT,
    Augment,
    augment_batch,
    batches,
    default_augment,
    epoch_indices,
    make_generator,
    num_batches,
)
from spikeshield.data.dataset import ImageDataset
from spikeshield.data.download import SOURCES, RemoteFile, Source, cache_dir, download_file, fetch, file_checksum
from spikeshield.data.folder import load_image_folder
from spikeshield.data.formats import RestrictedUnpickler, UnsafePickleError, read_cifar_batch, read_idx, read_svhn_mat
from spikeshield.data.info import DATASETS, DatasetInfo, dataset_info
from spikeshield.data.loaders import DEBIAN_FASHION_MNIST_DIR, load_dataset

__all__ = [
    "DATASETS",
    "DEBIAN_FASHION_MNIST_DIR",
    "DEFAULT_AUGMENT",
    "SOURCES",
    "Augment",
    "DatasetInfo",
    "ImageDataset",
    "RemoteFile",
    "RestrictedUnpickler",
    "Source",
    "UnsafePickleError",
    "augment_batch",
    "batches",
    "cache_dir",
    "dataset_info",
    "default_augment",
    "download_file",
    "epoch_indices",
    "fetch",
    "file_checksum",
    "load_dataset",
    "load_image_folder",
    "make_generator",
    "num_batches",
    "read_cifar_batch",
    "read_idx",
    "read_svhn_mat",
]
