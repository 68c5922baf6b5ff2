"""Training objectives: ``objective(model, x, y) -> (loss, logits)``, one function each, chosen by name.

``logits`` is the ``[B, classes]`` output the trainer uses for the running accuracy. Objectives register here under
their config names (``objective:`` in the training config); keyword parameters come from ``objective_params:``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from spikeshield.validation import unclamped_pixels, unknown_name

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of the time-averaged output ``model(x)`` (``[B, classes]``) against labels ``y``."""
    logits = model(x)
    return F.cross_entropy(logits, y), logits


def _pair_confidence(logits: torch.Tensor, y: torch.Tensor, wrong: torch.Tensor) -> torch.Tensor:
    """``f = e^{z_y} / (e^{z_y} + e^{z_j})`` per sample, for the wrong class ``j``: ``sigmoid(z_y - z_j)``."""
    return torch.sigmoid(logits.gather(1, y[:, None]) - logits.gather(1, wrong[:, None]))[:, 0]


def _pixel_std(model: nn.Module) -> torch.Tensor:
    std = getattr(model, "std", None)
    if not isinstance(std, torch.Tensor):
        raise ValueError("SR with h in normalised units needs the model's normalisation std (model.std); this model "
                         "has none: set objective_params.h_units: pixel")
    return std.reshape(-1, 1, 1)  # per channel, for [B, C, H, W] images


def sparsity_regularized(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lam: float = 1e-3, h: float = 0.01,
                         h_units: Literal["normalised", "pixel"] = "normalised") -> tuple[torch.Tensor, torch.Tensor]:
    """SR (Liu et al. 2024; the RandHet-SNN code, METHODS 2): cross-entropy plus ``lam`` times the squared finite
    difference of the pair confidence ``f`` (true class against the top wrong class) along ``v = sign(grad_x f)``:
    ``CE + lam * mean_batch(((f(x + h v) - f(x)) / h)^2)``.

    ``h`` is in normalised units by default (the code's: ``h * std`` in pixels, 0.0035 for FashionMNIST) or in
    pixel units. Every forward pass of a stochastic model draws afresh, so on RandHet the difference also penalises
    the output's noise, as in the code.
    """
    if h_units not in ("normalised", "pixel"):
        raise ValueError(f"SR h_units must be 'normalised' or 'pixel'; got {h_units!r}")
    if not (lam >= 0 and h > 0):
        raise ValueError(f"SR needs lam >= 0 and h > 0; got lam={lam}, h={h}")
    x = x.detach().requires_grad_(True)
    logits = model(x)
    wrong = logits.detach().scatter(1, y[:, None], float("-inf")).argmax(1)
    f = _pair_confidence(logits, y, wrong)
    (grad,) = torch.autograd.grad(f.sum(), x, retain_graph=True)
    step = h * _pixel_std(model) if h_units == "normalised" else h
    with unclamped_pixels():  # a finite difference, not an attack: the code does not clamp either
        shifted = _pair_confidence(model(x.detach() + step * grad.sign()), y, wrong)
    penalty = ((shifted - f) / h).pow(2).mean()
    return F.cross_entropy(logits, y) + lam * penalty, logits


def temporal_efficient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mu: float = 1e-3,
                       phi: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """TET (Deng et al. 2022), RSC-SNN's "pre-synaptic" loss (METHODS 4): the cross-entropy of every step's output
    ``o_t`` (``model.forward_steps``), averaged over steps, plus an MSE pulling every output towards ``phi``:
    ``(1 - mu) mean_t CE(o_t, y) + mu MSE(o, phi)``. Returns the time-averaged logits for the accuracy."""
    if not 0 <= mu <= 1:
        raise ValueError(f"TET mu must be in [0, 1]; got {mu}")
    steps = model.forward_steps(x)  # [T, B, classes]
    per_step = F.cross_entropy(steps.flatten(0, 1), y.repeat(steps.shape[0]))
    loss = (1 - mu) * per_step + mu * F.mse_loss(steps, torch.full_like(steps, phi))
    return loss, steps.mean(0)


def distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Knowledge distillation ``KL(softmax(z_t / tau) || softmax(z_s / tau)) tau^2``, batch mean (E-RSCT's L_KD,
    METHODS 4; ``tau = 1`` is the paper's literal eq. 15)."""
    log_student = F.log_softmax(student / temperature, dim=1)
    target = F.softmax(teacher.detach() / temperature, dim=1)
    return F.kl_div(log_student, target, reduction="batchmean") * temperature**2


def with_distillation(objective: Objective, teacher: nn.Module, lam: float = 0.1,
                      temperature: float = 1.0) -> Objective:
    """``objective`` plus ``lam`` times :func:`distillation` from a frozen ``teacher`` (run without gradients on the
    same batch: under adversarial training, the adversarial one). E-RSCT is ``tet`` with an ANN teacher, lam 0.1."""
    if not (lam >= 0 and temperature > 0):
        raise ValueError(f"distillation needs lam >= 0 and temperature > 0; got lam={lam}, temperature={temperature}")
    teacher.requires_grad_(False)

    def distilled(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, logits = objective(model, x, y)
        with torch.no_grad():
            target = teacher(x)
        return loss + lam * distillation(logits, target, temperature), logits

    return distilled


OBJECTIVES: dict[str, Objective] = {"ce": cross_entropy, "sr": sparsity_regularized, "tet": temporal_efficient}


def get_objective(name: str, **params) -> Objective:
    """Return the objective registered as ``name`` with keyword ``params`` bound (ValueError listing the valid names,
    or naming the bad parameter, otherwise)."""
    if name not in OBJECTIVES:
        raise unknown_name("objective", name, OBJECTIVES)
    if not params:
        return OBJECTIVES[name]
    objective = OBJECTIVES[name]
    try:
        inspect.signature(objective).bind(None, None, None, **params)
    except TypeError as e:
        raise ValueError(f"bad parameters for objective {name!r}: {e}") from None
    return partial(objective, **params)
