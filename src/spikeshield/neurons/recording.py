"""Record per-layer membrane potentials (pre-reset) and PSC traces of one forward pass.

>>> with record(model) as rec:
...     model(x)
>>> rec.membrane["body.1"].shape   # [T, B, ...]  # doctest: +SKIP

Recording lives only inside the ``with`` block: nothing is attached to the model (DESIGN 2).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from torch import nn

_ACTIVE: ContextVar[Recording | None] = ContextVar("spikeshield_recording", default=None)


@dataclass
class Recording:
    """Traces by layer name (as in ``model.named_modules()``), each ``[T, B, ...]``, detached."""

    names: dict[int, str]
    membrane: dict[str, torch.Tensor] = field(default_factory=dict)
    psc: dict[str, torch.Tensor] = field(default_factory=dict)
    spikes: dict[str, torch.Tensor] = field(default_factory=dict)


@contextmanager
def record(model: nn.Module) -> Iterator[Recording]:
    """Collect traces of every neuron and synapse layer of ``model`` during the block."""
    rec = Recording(names={id(m): name for name, m in model.named_modules()})
    token = _ACTIVE.set(rec)
    try:
        yield rec
    finally:
        _ACTIVE.reset(token)


def emit(module: nn.Module, kind: str, trace: torch.Tensor) -> None:
    """Hand a trace to the active recording, if any (called by neuron and synapse layers)."""
    rec = _ACTIVE.get()
    if rec is not None and id(module) in rec.names:
        getattr(rec, kind)[rec.names[id(module)]] = trace.detach()


def recording() -> bool:
    """True inside a :func:`record` block (lets layers skip building traces nobody asked for)."""
    return _ACTIVE.get() is not None
