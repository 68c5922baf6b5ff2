"""Training objectives: ``objective(model, x, y) -> (loss, logits)``, one function each, chosen by name.

``logits`` is the ``[B, classes]`` output the trainer uses for the running accuracy. Later objectives (TET, KD,
RAT's companion losses, SR) register here under their config names (``objective:`` in the training config).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from spikeshield.validation import unknown_name

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of the time-averaged output ``model(x)`` (``[B, classes]``) against labels ``y``."""
    logits = model(x)
    return F.cross_entropy(logits, y), logits


OBJECTIVES: dict[str, Objective] = {"ce": cross_entropy}


def get_objective(name: str) -> Objective:
    """Return the objective registered as ``name`` (ValueError listing the valid names otherwise)."""
    if name not in OBJECTIVES:
        raise unknown_name("objective", name, OBJECTIVES)
    return OBJECTIVES[name]
