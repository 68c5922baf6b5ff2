"""Static facts about each supported dataset: image shape, classes and normalisation statistics."""

from __future__ import annotations

from dataclasses import dataclass

from spikeshield.validation import unknown_name


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about its dataset.

    ``mean``/``std`` are per-channel statistics in pixel space ``[0, 1]``; models normalise with them internally.
    """

    name: str
    channels: int
    size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo("fashion_mnist", 1, 28, 10, (0.2860,), (0.3530,)),
        DatasetInfo("mnist", 1, 28, 10, (0.1307,), (0.3081,)),
        DatasetInfo("cifar10", 3, 32, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        DatasetInfo("cifar100", 3, 32, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
        DatasetInfo("svhn", 3, 32, 10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
        DatasetInfo("tiny_imagenet", 3, 64, 200, (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)),
        DatasetInfo("imagenet", 3, 224, 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ]
}


def dataset_info(name: str) -> DatasetInfo:
    """Return the :class:`DatasetInfo` for ``name`` or raise a ``ValueError`` listing the known datasets."""
    key = name.lower().replace("-", "_")
    if key not in DATASETS:
        raise unknown_name("dataset", name, DATASETS)
    return DATASETS[key]
