"""Readers for the official on-disk formats: IDX (MNIST family), CIFAR python pickles and SVHN ``.mat`` files.

Every reader checks structure and sizes and raises a ``ValueError`` naming the file when it is corrupt.
"""

from __future__ import annotations

import gzip
import pickle
import zlib
from pathlib import Path
from typing import Any

import numpy as np

_REDOWNLOAD = "delete it and download it again"

# IDX type code -> big-endian numpy dtype (see the MNIST page: "THE IDX FILE FORMAT").
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def corrupt(path: Path, problem: str) -> ValueError:
    """Build the error for a damaged data file: what is wrong, which file, and what to do."""
    return ValueError(f"{path}: {problem}; the file is corrupt or not what it claims to be: {_REDOWNLOAD}")


def read_bytes(path: Path) -> bytes:
    """Read a file whole, transparently decompressing gzip (detected by its magic bytes, not its name)."""
    raw = Path(path).read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise corrupt(path, f"bad or truncated gzip data ({err})") from None


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzip or raw) into an array, checking its magic number, dimensions and size."""
    path = Path(path)
    data = read_bytes(path)
    if len(data) < 4:
        raise corrupt(path, f"only {len(data)} bytes, too short for an IDX header")
    zero, type_code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or type_code not in _IDX_TYPES or ndim == 0:
        raise corrupt(path, f"bad IDX magic number 0x{data[:4].hex()} (expected 0x0000 + type code + dimension count)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise corrupt(path, f"truncated IDX header ({len(data)} bytes, need {header})")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[type_code])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "has trailing bytes"
        raise corrupt(path, f"IDX data {kind}: {len(data)} bytes, expected {expected} for dims {list(dims)}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx_pair(images_path: Path, labels_path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read an IDX image file ``[N, H, W]`` (uint8) and its label file ``[N]`` and check that they agree."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise corrupt(images_path, f"expected uint8 images [N, H, W], got {images.dtype} {list(images.shape)}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise corrupt(labels_path, f"expected uint8 labels [N], got {labels.dtype} {list(labels.shape)}")
    if len(images) != len(labels):
        raise ValueError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels: the two files "
            f"come from different splits or versions; {_REDOWNLOAD}"
        )
    if len(labels) and labels.max() >= num_classes:
        raise corrupt(labels_path, f"label {int(labels.max())} outside [0, {num_classes})")
    return images, labels


# --- CIFAR: python pickles, read with an allow-list -------------------------------------------------------------


def _allowed_globals() -> dict[tuple[str, str], Any]:
    from numpy._core.multiarray import _reconstruct  # the numpy>=2 home of the function the files name

    found: dict[tuple[str, str], Any] = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        found[(module, "_reconstruct")] = _reconstruct
    found[("numpy", "ndarray")] = np.ndarray
    found[("numpy", "dtype")] = np.dtype
    return found


class UnsafePickleError(pickle.UnpicklingError):
    """Raised by :class:`RestrictedUnpickler` for a global outside its allow-list."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild plain containers and numpy arrays, and nothing else.

    The official CIFAR files hold only dicts of bytes, lists and numpy arrays, so ``find_class`` accepts only the
    numpy array/dtype reconstructors and refuses every other global (``os.system``, ``builtins.eval``, ...) with a
    ``pickle.UnpicklingError``, before anything is called.
    """

    _allowed: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        """Return an allow-listed numpy global, or refuse."""
        if RestrictedUnpickler._allowed is None:
            RestrictedUnpickler._allowed = _allowed_globals()
        try:
            return RestrictedUnpickler._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load global {module}.{name}: only numpy arrays may be rebuilt from a dataset pickle"
            ) from None


def load_pickle(path: Path) -> Any:
    """Unpickle a dataset file (Python 2 ``encoding='bytes'`` compatible) with :class:`RestrictedUnpickler`."""
    path = Path(path)
    with open(path, "rb") as f:
        try:
            return RestrictedUnpickler(f, encoding="bytes").load()
        except UnsafePickleError as err:
            raise ValueError(f"{path}: unsafe pickle, {err}; this is not an official dataset file") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
            raise corrupt(path, f"unreadable pickle ({type(err).__name__}: {err})") from None


def _field(batch: dict, key: str) -> Any:
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise KeyError(key)


def read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR python batch into uint8 images ``[N, 3, 32, 32]`` and int64 labels ``[N]``.

    ``label_key`` is ``"labels"`` for CIFAR-10 and ``"fine_labels"`` for CIFAR-100.
    """
    batch = load_pickle(path)
    if not isinstance(batch, dict):
        raise corrupt(path, f"expected a dict batch, got {type(batch).__name__}")
    try:
        data, labels = _field(batch, "data"), _field(batch, label_key)
    except KeyError as err:
        raise corrupt(path, f"missing key {err.args[0]!r} (keys: {sorted(map(str, batch))})") from None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
        raise corrupt(path, f"expected uint8 data [N, 3072], got {got}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(data),):
        raise corrupt(path, f"{len(data)} images but labels of shape {list(labels.shape)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise corrupt(path, f"labels outside [0, {num_classes})")
    return data.reshape(-1, 3, 32, 32), labels


# --- SVHN: MATLAB v5 files -----------------------------------------------------------------------------------------


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an SVHN ``*_32x32.mat`` file into uint8 images ``[N, 3, 32, 32]`` and labels ``[N]`` (digit 0 is 0)."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path, variable_names=["X", "y"])
        x, y = mat["X"], mat["y"]
    except (ValueError, TypeError, OSError, KeyError, NotImplementedError) as err:
        raise corrupt(path, f"unreadable MATLAB file ({type(err).__name__}: {err})") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise corrupt(path, f"expected uint8 X [32, 32, 3, N], got {x.dtype} {list(x.shape)}")
    labels = np.asarray(y).reshape(-1).astype(np.int64)
    if len(labels) != x.shape[3]:
        raise corrupt(path, f"{x.shape[3]} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 1 or labels.max() > 10):
        raise corrupt(path, "SVHN labels must lie in 1..10 (10 stands for digit 0)")
    labels[labels == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), labels
