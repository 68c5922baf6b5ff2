"""A state file that lets an interrupted evaluation resume where it stopped, with the same result.

After every batch :func:`~spikeshield.evaluation.evaluate` writes the per-sample outcomes so far and the counters to
a JSON file (atomically, so a kill never leaves a torn file). A later call with the same ``state_file`` and the same
run (model config and weights, attacks, eps, seed, scoring draws, batch size, data size, and under torchrun the rank
and world size) skips the finished batches. Each batch's random draws are seeded from ``(seed, batch index)``
(:func:`batch_seed`), so the resumed result equals an uninterrupted run, and a run sharded over ranks equals one
process. A state file of another run (a retrained checkpoint included) is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikeshield.fileio import atomic_write_text

#: version of the state-file layout
STATE_SCHEMA = "spikeshield.eval-state/3"


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


def batch_seed(seed: int, index: int) -> int:
    """The torch seed of item ``index`` (a batch of :func:`~spikeshield.evaluation.evaluate`, a sample of
    :func:`~spikeshield.evaluation.certify`): its draws depend on ``seed`` and its index only, not on the items
    before it, so resumed and sharded runs equal an uninterrupted single process."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def rank_file(path: str | os.PathLike | None, ctx) -> Path | None:
    """The state file of this rank of ``ctx`` (a :class:`~spikeshield.distributed.Context`): ``path`` itself in one
    process, ``NAME.rank{r}-of-{w}.SUFFIX`` under torchrun (each rank resumes its own share)."""
    if path is None:
        return None
    path = Path(path)
    if not ctx.distributed:
        return path
    return path.with_name(f"{path.stem}.rank{ctx.rank}-of-{ctx.world_size}{path.suffix}")


@dataclass
class EvalState:
    """Progress of one evaluation (one rank's share under torchrun): the batches gone through, the sizes of those
    this rank attacked, their per-sample flags and fractions, and counters."""

    fingerprint: str
    batches_done: int = 0
    flags: dict[str, list[bool]] = field(default_factory=dict)
    fractions: dict[str, list[float]] = field(default_factory=dict)
    adversarial: dict[str, list[bool]] = field(default_factory=dict)
    passes: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    sizes: list[int] = field(default_factory=list)

    def save(self, path: str | os.PathLike) -> None:
        """Write the state atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"schema": STATE_SCHEMA, **asdict(self)}) + "\n")

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
