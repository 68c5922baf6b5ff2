"""Checkpoints without pickle: a directory with ``model.safetensors`` (weights) and ``config.json`` (how to rebuild).

``save(model, "run/model")`` writes::

    run/model/
      model.safetensors   the state dict, contiguous CPU tensors (safetensors: no code runs on load)
      config.json         format tag, spikeshield version, the create_model() arguments (``model.config``),
                          the SHA-256 of the weights file, and optional metadata (training config, epoch, metrics)

``load("run/model")`` checks the hash, rebuilds the model with ``build_model(config)`` and loads the weights
strictly, or raises a clear error; it never returns a half-loaded model. Pickle files (``torch.save`` output,
``.pt``/``.pth``/``.ckpt``) are refused, never loaded: unpickling runs arbitrary code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save_file
from torch import nn

FORMAT = "spikeshield-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

_CONVERT_HINT = (
    "To convert a model you trust: in a trusted environment build it with spikeshield.models.create_model(...), "
    "load the old weights yourself (e.g. model.load_state_dict(torch.load(FILE, weights_only=True))), then call "
    "spikeshield.checkpoint.save(model, DIR)."
)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("spikeshield")
    except Exception:  # noqa: BLE001  (not installed: running from a source tree)
        return "unknown"


def sha256_file(path: str | os.PathLike) -> str:
    """Return the hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not supported everywhere (e.g. some network file systems, Windows)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON and fsync it (raises TypeError naming the problem if not JSON-ready)."""
    try:
        text = json.dumps(data, indent=2, sort_keys=False, allow_nan=True)
    except TypeError as e:
        msg = f"cannot store as JSON ({e}); metadata must hold only dicts, lists, str, numbers, bool and None"
        raise TypeError(msg) from None
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``path``; on success it replaces ``path`` in one rename.

    Readers see either the old directory or the complete new one (an earlier ``path`` is moved to ``.NAME.old``
    for the instant between two renames and then deleted). On error the temporary directory is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    old = path.parent / f".{path.name}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        _fsync_dir(tmp)
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    tensors = {}
    for key, value in model.state_dict().items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict entry {key!r} is a {type(value).__name__}, not a tensor: cannot save it")
        # clone: safetensors refuses tensors that share memory; contiguous CPU copies are always safe to write
        tensors[key] = value.detach().to("cpu").contiguous().clone()
    return tensors


def _check_target(path: Path) -> None:
    """Refuse to replace anything that is not a spikeshield checkpoint (a file, or a directory of other things)."""
    if not path.exists():
        return
    if not path.is_dir():
        raise FileExistsError(f"cannot save a checkpoint to {path}: a file with that name exists")
    if any(path.iterdir()) and not (path / CONFIG_FILE).is_file():
        raise FileExistsError(
            f"cannot save a checkpoint to {path}: the directory exists and is not a spikeshield checkpoint "
            f"(no {CONFIG_FILE}); choose another path or empty it"
        )


def save(model: nn.Module, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
    """Save ``model`` as a checkpoint directory ``path`` (weights as safetensors + ``config.json``), atomically.

    Args:
        model: a model built by :func:`spikeshield.models.create_model`, a purifier or a
            :class:`~spikeshield.models.Pipeline` (each carries ``model.config``, which rebuilds it).
        path: the checkpoint directory; an existing checkpoint there is replaced in one step.
        metadata: optional JSON-ready dict stored in ``config.json`` under ``"metadata"`` (e.g. the training
            config, epoch and metrics); read it back with :func:`read_config`.

    Returns:
        The checkpoint directory as a :class:`~pathlib.Path`.

    >>> save(model, "runs/quick/model", metadata={"epoch": 3})  # doctest: +SKIP
    """
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise TypeError(
            "only models built by spikeshield.models.create_model can be saved (they carry model.config, the "
            f"arguments that rebuild them); got a {type(model).__name__} without a config dict"
        )
    path = Path(path)
    _check_target(path)
    tensors = _state_tensors(model)
    with atomic_dir(path) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT})
        record = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "spikeshield_version": _version(),
            "model": config,
            "weights": {
                "file": WEIGHTS_FILE,
                "sha256": sha256_file(tmp / WEIGHTS_FILE),
                "tensors": len(tensors),
                "parameters": sum(t.numel() for t in tensors.values()),
            },
            "metadata": metadata or {},
        }
        write_json(tmp / CONFIG_FILE, record)
    return path


def _describe_file(path: Path) -> str:
    """Say what a single file looks like, for the error that refuses it."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive, the format of torch.save (pickle inside)"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "a pickle file (e.g. torch.save with the legacy format)"
    if path.suffix.lower() in {".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".tar"}:
        return f"a {path.suffix} file (usually a pickle)"
    if path.suffix.lower() == ".safetensors":
        return f"a bare weights file without its {CONFIG_FILE}; load the directory that holds both"
    return "a single file, not a checkpoint directory"


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """Return the parsed ``config.json`` of checkpoint directory ``path`` (model config, hash, metadata).

    Raises ValueError for pickle files and other non-checkpoints, FileNotFoundError when parts are missing.
    """
    path = Path(path)
    if not path.exists():
        old = path.parent / f".{path.name}.old"
        hint = f" (an interrupted save left {old}: rename it to {path.name} to recover)" if old.exists() else ""
        raise FileNotFoundError(f"no checkpoint at {path}: the directory does not exist{hint}")
    if not path.is_dir():
        raise ValueError(
            f"refusing to load {path}: it is {_describe_file(path)}. spikeshield checkpoints are directories with "
            f"{WEIGHTS_FILE} and {CONFIG_FILE}; pickle files are refused, never loaded, because unpickling can run "
            f"arbitrary code. {_CONVERT_HINT}"
        )
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        pickles = sorted(p.name for p in path.iterdir() if p.suffix.lower() in {".pt", ".pth", ".ckpt", ".pkl"})
        extra = (
            f" It holds {', '.join(pickles)}: pickle files are refused, never loaded, for safety. {_CONVERT_HINT}"
            if pickles
            else ""
        )
        raise FileNotFoundError(f"{path} is not a spikeshield checkpoint: {CONFIG_FILE} is missing.{extra}")
    try:
        record = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{config_path} is not valid JSON ({e}): the checkpoint is damaged") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{config_path} is not a spikeshield checkpoint config (no \"format\": \"{FORMAT}\")")
    if record.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{path} has checkpoint format version {record['format_version']}, newer than this spikeshield "
            f"({_version()}) reads ({FORMAT_VERSION}): upgrade spikeshield"
        )
    for key in ("model", "weights"):
        if not isinstance(record.get(key), dict):
            raise ValueError(f"{config_path} lacks the {key!r} section: the checkpoint is damaged")
    return record


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Return the verified state dict (CPU tensors) of checkpoint directory ``path`` without building a model.

    The weights file's SHA-256 must match ``config.json``: truncated or modified files raise ValueError.
    """
    path = Path(path)
    record = read_config(path)
    weights = record["weights"]
    file = path / weights.get("file", WEIGHTS_FILE)
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint {path} is incomplete: its weights file {file.name} is missing")
    data = file.read_bytes()  # hash and parse the same bytes
    actual = hashlib.sha256(data).hexdigest()
    if actual != weights.get("sha256"):
        raise ValueError(
            f"checkpoint {path}: the weights file {file.name} does not match the SHA-256 recorded in {CONFIG_FILE} "
            f"(expected {weights.get('sha256')}, got {actual}); it was truncated or modified. Refusing to load it."
        )
    try:
        return load_safetensors_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise ValueError(f"checkpoint {path}: {file.name} is not a valid safetensors file ({e})") from None


def check_state_dict(model: nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Raise ValueError unless ``tensors`` has exactly ``model``'s state-dict keys, shapes and dtypes."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = [
        f"{k}: stored {tuple(tensors[k].shape)} {tensors[k].dtype}, model {tuple(v.shape)} {v.dtype}"
        for k, v in expected.items()
        if k in tensors and (tensors[k].shape != v.shape or tensors[k].dtype != v.dtype)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if extra:
        problems.append(f"unexpected keys {extra}")
    if wrong:
        problems.append("mismatched tensors [" + "; ".join(wrong) + "]")
    if problems:
        raise ValueError(
            f"{where}: the weights do not fit the model its config builds: " + ", ".join(problems)
            + ". The checkpoint is damaged or was written by an incompatible version."
        )


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Load a checkpoint directory written by :func:`save` and return the model in eval mode on ``device``.

    The weights' SHA-256 is checked first, the model is rebuilt with ``build_model(config["model"])`` and the
    weights are loaded strictly (same keys, shapes and dtypes). Pickle files and anything else that is not a
    spikeshield checkpoint directory are refused with a ValueError; missing parts raise FileNotFoundError.

    >>> model = load("runs/quick/model")  # doctest: +SKIP
    """
    from spikeshield.models import build_model

    path = Path(path)
    record = read_config(path)
    tensors = read_weights(path)
    try:
        model = build_model(record["model"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"checkpoint {path}: cannot rebuild the model from {CONFIG_FILE} ({e})") from None
    check_state_dict(model, tensors, f"checkpoint {path}")
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval()
