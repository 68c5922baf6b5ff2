"""RAT's orthogonal retraction (SNN-RAT, Ding et al. 2022; the RandHet-SNN code's ``RAT``; METHODS 2).

After every optimiser step each Conv weight (reshaped to ``out x rest``) and Linear weight ``W`` moves towards a
matrix with orthonormal rows: ``W <- (1 + beta) W - beta W W^T W``. A Linear layer with at least
:data:`ROW_SUBSAMPLE_MIN` rows updates a random :data:`ROW_SUBSAMPLE_SHARE` of its rows per step (the reference's
rule, which keeps the ``rows x rows`` Gram matrix small); the rows are drawn from ``generator`` (the trainer's is
seeded per epoch and shared by every rank of a distributed run, so the ranks' weights stay identical).
"""

from __future__ import annotations

import torch
from torch import nn

#: Linear layers with at least this many rows update a random subset of them
ROW_SUBSAMPLE_MIN = 200
#: the share of rows such a layer updates per step
ROW_SUBSAMPLE_SHARE = 0.3


def _retract(w: torch.Tensor, beta: float) -> torch.Tensor:
    """``(1 + beta) W - beta W W^T W`` for a matrix ``W`` (rows = output units)."""
    return (1 + beta) * w - beta * (w @ w.T) @ w


@torch.no_grad()
def orthogonal_retraction(model: nn.Module, beta: float, generator: torch.Generator | None = None) -> None:
    """Apply one RAT retraction step with strength ``beta`` (> 0; the papers use 0.004) to every trainable Conv and
    Linear weight of ``model``, in place (frozen ones, e.g. a pipeline's frozen classifier, are left alone).
    ``generator`` (a CPU generator; None: the global one) draws the rows of large Linear layers.

    >>> optimizer.step(); orthogonal_retraction(model, 0.004)   # doctest: +SKIP
    """
    if not beta > 0:
        raise ValueError(f"the RAT strength beta must be > 0 (e.g. 0.004); got {beta!r}")
    for module in model.modules():
        if not getattr(getattr(module, "weight", None), "requires_grad", False):
            continue
        if isinstance(module, nn.modules.conv._ConvNd):
            w = module.weight.view(module.weight.shape[0], -1)
            w.copy_(_retract(w, beta))
        elif isinstance(module, nn.Linear):
            w = module.weight
            if w.shape[0] >= ROW_SUBSAMPLE_MIN:
                rows = torch.randperm(w.shape[0], generator=generator)[: int(ROW_SUBSAMPLE_SHARE * w.shape[0])]
                rows = rows.to(w.device)
                w[rows] = _retract(w[rows], beta)
            else:
                w.copy_(_retract(w, beta))
