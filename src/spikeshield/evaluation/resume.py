"""A state file that lets an interrupted evaluation resume where it stopped, with the same result.

After every batch :func:`~spikeshield.evaluation.evaluate` writes the per-sample outcomes so far, the counters and the
global torch RNG state to a JSON file (atomically, so a kill never leaves a torn file). A later call with the same
``state_file`` and the same run (model config, attacks, eps, seed, batch size, data size) skips the finished batches
and restores the RNG state, so the resumed result equals an uninterrupted run. A state file of another run is refused.
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
STATE_SCHEMA = "spikeshield.eval-state/1"


def run_fingerprint(**run: Any) -> str:
    """A short hash of everything that must match for a state file to be resumed (JSON-ready values)."""
    text = json.dumps(run, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class EvalState:
    """Progress of one evaluation: finished batches, per-sample flags, counters and the RNG state after them."""

    fingerprint: str
    batches_done: int = 0
    flags: dict[str, list[bool]] = field(default_factory=dict)
    passes: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    rng: str | None = None

    def save(self, path: str | os.PathLike) -> None:
        """Write the state atomically, capturing the current global torch RNG state."""
        self.rng = base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"schema": STATE_SCHEMA, **asdict(self)}) + "\n")

    def restore_rng(self) -> None:
        """Set the global torch RNG to the state saved with the last finished batch."""
        if self.rng is not None:
            raw = bytearray(base64.b64decode(self.rng))
            torch.set_rng_state(torch.frombuffer(raw, dtype=torch.uint8).clone())

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
            raise ValueError(f"{path} belongs to a different evaluation (other model, attacks, eps, seed, batch size "
                             f"or data); use another state file or delete it to start over")
        return state
