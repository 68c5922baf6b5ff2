"""Training objectives: ``objective(model, x, y) -> (loss, logits)``, one function each, chosen by name.

``logits`` is the ``[B, classes]`` output the trainer uses for the running accuracy. Objectives register here under
their config names (``objective:`` in the training config); keyword parameters come from ``objective_params:``.
Stateful objectives are classes (:class:`OnlineLabelSmoothing`, :class:`Denoising`): a fresh instance per run,
with optional ``start_epoch(epoch)`` / ``end_epoch()`` hooks, ``state_dict()`` / ``load_state_dict()`` (kept with the
resume point) and ``takes_clean`` (called as ``objective(model, x, y, clean=...)`` with the unattacked batch).
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


class OnlineLabelSmoothing:
    """Online label smoothing (Zhang et al., IEEE TIP 2021; the purification paper's classifier training, METHODS 3):
    ``alpha CE(z, y) + (1 - alpha) soft-CE(z, S[y])`` with a per-class matrix of soft targets ``S`` (``K x K``,
    starting uniform at ``1/K``). During an epoch the softmax outputs of correctly classified samples are summed per
    class; at the epoch's end ``S[c]`` becomes their mean (a class with none keeps its row). ``S`` travels with the
    training state, so a resumed run continues with the same targets.

    A stateful objective: the trainer calls :meth:`start_epoch` and :meth:`end_epoch` around each epoch and stores
    :meth:`state_dict` with the resume point.
    """

    def __init__(self, alpha: float = 0.5) -> None:
        if not 0 <= alpha <= 1:
            raise ValueError(f"OLS alpha must lie in [0, 1]; got {alpha}")
        self.alpha = alpha
        self.targets: torch.Tensor | None = None  # S, [K, K]
        self._sums: torch.Tensor | None = None
        self._counts: torch.Tensor | None = None

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, logits)`` of the batch; correctly classified samples feed next epoch's targets."""
        logits = model(x)
        classes = logits.shape[1]
        if self.targets is None:
            self.targets = torch.full((classes, classes), 1 / classes)
        if self._sums is None:
            self._sums, self._counts = torch.zeros(classes, classes), torch.zeros(classes)
        targets = self.targets.to(logits.device, logits.dtype)[y]
        soft = -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()
        with torch.no_grad():
            right = logits.argmax(1) == y
            self._sums.index_add_(0, y[right].cpu(), F.softmax(logits[right], dim=1).float().cpu())
            self._counts.index_add_(0, y[right].cpu(), torch.ones(int(right.sum())))
        return self.alpha * F.cross_entropy(logits, y) + (1 - self.alpha) * soft, logits

    def start_epoch(self, epoch: int) -> None:
        """Start collecting this epoch's statistics afresh."""
        self._sums = self._counts = None

    def end_epoch(self) -> None:
        """Set each class's soft targets to the mean softmax of its correctly classified samples this epoch."""
        if self._sums is None or self.targets is None:
            return
        seen = self._counts > 0
        self.targets[seen] = self._sums[seen] / self._counts[seen, None]

    def state_dict(self) -> dict:
        """The soft-target matrix, JSON-ready (None before the first batch)."""
        return {"targets": None if self.targets is None else self.targets.tolist()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        targets = state.get("targets")
        self.targets = None if targets is None else torch.tensor(targets)


class Denoising:
    """The purifier's objective (METHODS 3, eq. 10) on a :class:`~spikeshield.models.Pipeline` of a trainable
    ``stage`` (the purifier) and a frozen classifier: the purifier maps the (adversarial) batch ``x`` back to the
    ``clean`` images; Charbonnier alone for the first ``charbonnier_epochs`` epochs, then ``L_rec`` (``beta``), plus
    ``l_asym`` times the asymmetric noise-level loss (``gamma``) and ``l_tv`` times its total variation. The returned
    logits are the classifier's on the purified images (the running accuracy is the purified accuracy).

    The trainer passes ``clean`` (it sets :attr:`takes_clean`) and calls :meth:`start_epoch`.
    """

    takes_clean = True

    def __init__(self, charbonnier_epochs: int = 1, beta: float = 0.5, gamma: float = 0.3, l_asym: float = 0.5,
                 l_tv: float = 0.05, stage: str = "purifier") -> None:
        from spikeshield.defenses.purification import purification_loss

        purification_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2),
                          torch.zeros(1, 1, 2, 2), beta=beta, gamma=gamma, l_asym=l_asym, l_tv=l_tv)  # checks
        if charbonnier_epochs < 0:
            raise ValueError(f"charbonnier_epochs must be >= 0; got {charbonnier_epochs}")
        self.loss = partial(purification_loss, beta=beta, gamma=gamma, l_asym=l_asym, l_tv=l_tv)
        self.charbonnier_epochs, self.stage, self.epoch = charbonnier_epochs, stage, 0

    def start_epoch(self, epoch: int) -> None:
        """Record the epoch (the Charbonnier-then-L_rec schedule)."""
        self.epoch = epoch

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, logits)`` for noisy images ``x``, labels ``y`` and their ``clean`` originals."""
        stage = getattr(model, "stage", None)
        if stage is None:
            raise ValueError("the denoise objective trains a Pipeline's purifier stage (set purify.classifier in the "
                             "config); this model is not a pipeline")
        x_hat, sigma = stage(self.stage).denoise(x)
        loss = self.loss(x_hat, sigma, clean, x, charbonnier_only=self.epoch < self.charbonnier_epochs)
        with torch.no_grad():
            logits = model.classifier(x_hat.clamp(0, 1))
        return loss, logits


OBJECTIVES: dict[str, Objective | type] = {"ce": cross_entropy, "sr": sparsity_regularized, "tet": temporal_efficient,
                                           "ols": OnlineLabelSmoothing, "denoise": Denoising}


def get_objective(name: str, **params) -> Objective:
    """Return the objective registered as ``name`` with keyword ``params`` bound (ValueError listing the valid names,
    or naming the bad parameter, otherwise)."""
    if name not in OBJECTIVES:
        raise unknown_name("objective", name, OBJECTIVES)
    objective = OBJECTIVES[name]
    if isinstance(objective, type):  # a stateful objective: a fresh instance per run
        try:
            return objective(**params)
        except TypeError as e:
            raise ValueError(f"bad parameters for objective {name!r}: {e}") from None
    if not params:
        return objective
    try:
        inspect.signature(objective).bind(None, None, None, **params)
    except TypeError as e:
        raise ValueError(f"bad parameters for objective {name!r}: {e}") from None
    return partial(objective, **params)
