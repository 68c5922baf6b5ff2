"""A state file that lets an interrupted evaluation resume where it stopped, with the same result.

After every batch :func:`~spikeshield.evaluation.evaluate` writes the per-sample outcomes so far, the counters and the
global torch RNG states (CPU, and every CUDA device's where CUDA is initialised) to a JSON file (atomically, so a
kill never leaves a torn file). A later call with the same ``state_file`` and the same run (model config and weights,
attacks, eps, seed, scoring draws, batch size, data size) skips the finished batches and restores the RNG states, so
the resumed result equals an uninterrupted run. A state file of another run (a retrained checkpoint included) is
refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from spikeshield.fileio import atomic_write_text

#: version of the state-file layout
STATE_SCHEMA = "spikeshield.eval-state/2"


def run_fingerprint(**run: Any) -> str:
    """A short hash of everything that must match for a state file to be resumed (JSON-ready values)."""
    text = json.dumps(run, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def weights_hash(model) -> str | None:
    """A short hash of the model's parameters and buffers (names, shapes, dtypes and values); None if it has none."""
    state = model.state_dict() if callable(getattr(model, "state_dict", None)) else {}
    if not state:
        return None
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        if isinstance(tensor, torch.Tensor):
            data = tensor.detach().cpu().contiguous()
            digest.update(f"{name}:{list(data.shape)}:{data.dtype}".encode())
            digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()[:16]


def _encode(state: torch.Tensor) -> str:
    return base64.b64encode(state.numpy().tobytes()).decode()


def _decode(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


@dataclass
class EvalState:
    """Progress of one evaluation: finished batches, per-sample flags, counters and the RNG state after them."""

    fingerprint: str
    batches_done: int = 0
    flags: dict[str, list[bool]] = field(default_factory=dict)
    fractions: dict[str, list[float]] = field(default_factory=dict)
    adversarial: dict[str, list[bool]] = field(default_factory=dict)
    passes: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    rng: str | None = None
    cuda_rng: list[str] | None = None

    def save(self, path: str | os.PathLike) -> None:
        """Write the state atomically, capturing the current global torch RNG states (CPU and CUDA)."""
        self.rng = _encode(torch.get_rng_state())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            self.cuda_rng = [_encode(s) for s in torch.cuda.get_rng_state_all()]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"schema": STATE_SCHEMA, **asdict(self)}) + "\n")

    def restore_rng(self) -> None:
        """Set the global torch RNG states (CPU, and CUDA where saved) to those saved with the last finished batch."""
        if self.rng is not None:
            torch.set_rng_state(_decode(self.rng))
        if self.cuda_rng:
            if not torch.cuda.is_available() or torch.cuda.device_count() < len(self.cuda_rng):
                raise ValueError("this state file holds the CUDA random state of a run on more CUDA devices than "
                                 "are available here: resume it where it ran, or delete it to start over")
            torch.cuda.set_rng_state_all([_decode(s) for s in self.cuda_rng])

    @classmethod
    def load_or_new(cls, path: str | os.PathLike | None, fingerprint: str) -> EvalState:
        """The state in ``path`` if it exists (it must belong to the same run), else a fresh one."""
        if path is None or not Path(path).exists():
            return cls(fingerprint)
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            schema = data.pop("schema")
            state = cls(**data)
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{path} is not a spikeshield evaluation state file ({e}); delete it to start over") \
                from None
        if schema != STATE_SCHEMA:
            raise ValueError(f"{path} has state schema {schema!r}; this version reads {STATE_SCHEMA!r}")
        if state.fingerprint != fingerprint:
            raise ValueError(f"{path} belongs to a different evaluation (other model or weights, attacks, eps, seed, "
                             f"scoring draws, batch size or data); use another state file or delete it to start over")
        return state
