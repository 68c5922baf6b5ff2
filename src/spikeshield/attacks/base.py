"""The one attack base class: validation, EOT input gradients, the eps-ball projection (DESIGN 4, 6, 7, 8).

A subclass writes only its math in :meth:`Attack.perturb`; the base class checks the inputs, runs ``perturb`` under
the attacker's gradient mode, projects the result into the L-inf eps-ball around ``x`` and into ``[0, 1]``, and
returns it detached. The base class never calls ``model.train()`` / ``model.eval()``, never touches parameters or
buffers (input gradients come from :func:`torch.autograd.grad`, so no parameter ``.grad`` accumulates) and never
seeds the random generator: randomness comes from the global torch RNG, so ``torch.manual_seed`` before a call makes
it reproducible.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from spikeshield import decision
from spikeshield.attacks.losses import LOSSES
from spikeshield.neurons.base import has_spiking_neurons
from spikeshield.neurons.gradients import (
    MODEL_GRADIENTS,
    BackwardMode,
    Gradient,
    frozen_statistics,
    gradient_mode,
    gradient_name,
    make_gradient,
    mode_parameters,
)
from spikeshield.validation import check_eps, check_images, unclamped_pixels, unknown_name


def _check_positive_int(value: Any, name: str) -> int:
    """Return ``value`` if it is an integer >= 1, else raise a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    return value


def check_step(alpha: float, name: str = "alpha") -> float:
    """Check a step size (pixel units, in [0, 1]) and return it as a float."""
    return check_eps(alpha, name)


def check_steps(steps: int) -> int:
    """Check a number of iterations (integer >= 1)."""
    return _check_positive_int(steps, "steps")


def check_labels(y: torch.Tensor, batch: int, num_classes: int | None, what: str = "labels") -> torch.Tensor:
    """Check class indices ``y`` (shape ``[batch]``, integers in ``[0, num_classes)``); return them as int64."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{what} y must be a torch.Tensor of shape [B] (int64); got {type(y).__name__}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{what} y must be integer class indices (int64), not {y.dtype}")
    if y.shape != (batch,):
        raise ValueError(f"{what} y must have shape [B] = [{batch}] to match the images; got {list(y.shape)}")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or (num_classes is not None and hi >= num_classes):
        top = num_classes if num_classes is not None else "classes"
        raise ValueError(f"{what} y must lie in [0, {top}) (class indices); got values in [{lo}, {hi}]")
    return y.long()


class Attack:
    """Base class of every L-inf attack: ``x_adv = attack(x, y)``.

    Args:
        model: a classifier taking ``x`` ``[B, C, H, W]`` in [0, 1] to logits ``[B, classes]``; a spikeshield model
            (its ``info`` is used to check inputs). Its mode (train/eval) is left as it is.
        eps: L-inf budget in pixel units, in [0, 1] (e.g. ``8/255``).
        targeted: if True, ``y`` holds target labels and the attack moves towards them.
        eot: Expectation over Transformation draws per gradient (integer >= 1). With ``eot=m`` the batch is
            repeated ``m`` times along the batch dimension (in one forward/backward pass on an accelerator, in
            passes of at most :data:`~spikeshield.decision.CPU_IMAGES_PER_PASS` images on the CPU) and the ``m``
            per-draw gradients are averaged. None (default): :data:`~spikeshield.decision.DEFAULT_EOT` for a
            stochastic model (``model.is_stochastic``, or observed on the first call for a model that declares
            nothing), else 1.
        grad: backward pass used for the attacker's gradients (DESIGN 6, METHODS 7): None keeps each neuron's
            own surrogate; a surrogate name (``"triangle"``, ``"exponential"``), a ``{"name": ..., param: ...}`` dict
            or a surrogate instance replaces it inside the attack only (see
            :func:`spikeshield.neurons.gradients.gradient_mode`); ``"bptr"``, ``"rga"``, ``"hart"``,
            ``"hart-mix"``, ``"pdsg"``, ``"assg"`` use those backward modes (METHODS 7; ASSG's statistics start afresh
            at each call); ``"ann"`` / ``"ann-clamp"`` take the gradients of the model's ANN twin
            (:func:`~spikeshield.attacks.bpda.with_ann_gradients`: ``self.model`` becomes that wrapper, values stay
            the model's own). The forward, and so every loss and prediction, is always the model's exact one.
        clamp: True (default, the standard threat model) keeps ``x_adv`` in ``[0, 1]``; False drops that clip (only
            the eps-ball remains), the non-standard threat model of some published SNN code (METHODS 1). Results
            record it and reports label it.
        loss: ``"ce"`` (cross-entropy), ``"dlr"`` (difference of logits ratio, >= 3 classes), ``"cw"`` (the
            Carlini-Wagner margin ``max_{j != y} z_j - z_y``) or a callable
            ``loss(logits, y) -> [B]`` per-sample loss.
        score_draws: draws behind each verdict the attack makes on a stochastic model (has an iterate fooled it?:
            :func:`spikeshield.decision.judge`, majority over fresh draws); None:
            :data:`~spikeshield.decision.DEFAULT_SCORE_DRAWS` for a stochastic model, 1 otherwise.

    A gradient mode (``grad``) needs spikeshield spiking neurons to act on: on a model without any it is an error
    (the model's own gradient would run under the mode's name).

    Attributes:
        forward_passes: images sent through the model by this attack so far (EOT draws count separately).
        stochastic: whether the model is random (declared, or probed on the first call; None until known).

    Subclasses implement :meth:`perturb` and may extend :meth:`settings`.
    """

    #: short registry-style name used in reports
    name: str = "attack"

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        *,
        targeted: bool = False,
        eot: int | None = None,
        grad: str | dict | Gradient | None = None,
        loss: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = "ce",
        clamp: bool = True,
        score_draws: int | None = None,
    ) -> None:
        if not callable(model):
            raise TypeError(f"model must be a callable nn.Module; got {type(model).__name__}")
        self.model = model
        self.eps = check_eps(eps, "eps")
        self.targeted = bool(targeted)
        self._eot_given = None if eot is None else _check_positive_int(eot, "eot (number of EOT draws)")
        self._score_draws_given = score_draws
        self._set_stochastic(decision.declared_stochastic(model))
        self.grad: Gradient | str | None
        grad_name = grad.get("name") if isinstance(grad, dict) else grad
        if isinstance(grad_name, str) and grad_name in MODEL_GRADIENTS:
            from spikeshield.attacks.bpda import ANNGradientModel, with_ann_gradients

            activation = "clamp" if grad_name == "ann-clamp" else "relu"
            self.model = model if isinstance(model, ANNGradientModel) else with_ann_gradients(model, activation)
            self.grad = grad_name
        else:
            self.grad = make_gradient(grad)
            if self.grad is not None and not has_spiking_neurons(model):
                label = grad_name if isinstance(grad_name, str) else gradient_name(self.grad)
                raise ValueError(f"grad={label!r} is a backward mode of spikeshield's spiking neurons, but this model "
                                 f"has none (a model from another framework?): its own gradient would run and be "
                                 f"recorded as {label!r}. Attack it with grad=None (its own gradient), or convert it "
                                 f"to spikeshield neurons (spikeshield.adapters, issue 20) to use gradient modes.")
        if callable(loss):
            self.loss_name, self.loss_fn = getattr(loss, "__name__", "custom"), loss
        elif loss in LOSSES:
            self.loss_name, self.loss_fn = loss, LOSSES[loss]
        else:
            raise unknown_name("attack loss", loss, LOSSES)
        if not isinstance(clamp, bool):
            raise ValueError(f"clamp must be True (the standard threat model) or False; got {clamp!r}")
        self.clamp = clamp
        self.forward_passes = 0

    # ----------------------------------------------------------------------------------------------- public API
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Adversarial examples for images ``x`` ``[B, C, H, W]`` in [0, 1] and labels ``y`` ``[B]`` (int64).

        For a targeted attack ``y`` holds the target labels. Returns a detached tensor of the shape of ``x``,
        inside ``[x - eps, x + eps]`` and ``[0, 1]``.
        """
        x, y = self._check_inputs(x, y)
        if self.stochastic is None:
            self.observe_randomness(x)
        with torch.enable_grad(), self.gradient_context(), self.threat_model():
            x_adv = self.perturb(x, y)
        return self.project(x_adv, x).detach()

    def observe_randomness(self, x: torch.Tensor) -> None:
        """For a model that does not declare ``is_stochastic``: probe it on ``x``
        (:func:`spikeshield.decision.is_stochastic`); if random, switch on EOT (unless ``eot`` was given) and k-draw
        verdicts (unless ``score_draws`` was given)."""
        with self.threat_model():
            self._set_stochastic(decision.is_stochastic(self.model, x))

    def _set_stochastic(self, stochastic: bool | None) -> None:
        """Record whether the model is random (None: not known yet) and the EOT and verdict draws that follow from
        it, unless they were given."""
        self.stochastic = stochastic
        self.eot = self._eot_given or (decision.DEFAULT_EOT if stochastic else 1)
        self.score_draws = decision.score_draws_for(bool(stochastic), self._score_draws_given)

    def draw_options(self) -> dict[str, int | None]:
        """``eot`` and ``score_draws`` as given to this attack (None where left to the default), for the members a
        suite builds: they then resolve their defaults from the model as this attack does."""
        return {"eot": self._eot_given, "score_draws": self._score_draws_given}

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The attack's math: return candidate adversarial images (the caller projects them)."""
        raise NotImplementedError(f"{type(self).__name__} must implement perturb(x, y)")

    def settings(self) -> dict[str, Any]:
        """JSON-ready record of the attack and its arguments (stored in evaluation results)."""
        grad: str | dict
        if self.grad is None or isinstance(self.grad, str):
            grad = self.grad or "own"
        elif isinstance(self.grad, BackwardMode) and self.grad == type(self.grad)():
            grad = self.grad.name  # "bptr", "rga", "hart", ... with the default parameters
        elif isinstance(self.grad, BackwardMode):
            grad = {"name": self.grad.name, **mode_parameters(self.grad)}
        else:
            grad = {"name": gradient_name(self.grad), **dataclasses.asdict(self.grad)}
        return dict(attack=type(self).__name__, eps=self.eps, targeted=self.targeted, eot=self.eot,
                    grad=grad, loss=self.loss_name, clamp=self.clamp, score_draws=self.score_draws)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items() if k != "attack")
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------------------------- helpers for subclasses
    def gradient_context(self) -> contextlib.AbstractContextManager:
        """Context in which the attacker's gradients are computed: the surrogate swap or backward mode, if any."""
        if self.grad is None or isinstance(self.grad, str):
            return contextlib.nullcontext()
        return gradient_mode(self.grad.fresh() if isinstance(self.grad, BackwardMode) else self.grad)

    def threat_model(self) -> contextlib.AbstractContextManager:
        """Context the attack runs in: with ``clamp=False`` models accept pixels outside [0, 1]."""
        return contextlib.nullcontext() if self.clamp else unclamped_pixels()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Model output for ``x`` without gradients (counted in :attr:`forward_passes`)."""
        with torch.no_grad():
            out = self.model(x)
        self.forward_passes += x.shape[0]
        return out

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Summed attack objective to ascend: the loss, or minus the loss towards the target labels."""
        per_sample = self.loss_fn(logits, y)
        return -per_sample.sum() if self.targeted else per_sample.sum()

    def input_gradient(self, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Gradient of :meth:`loss` with respect to the images ``x_adv`` ``[B, ...]``, averaged over EOT draws.

        With ``eot = m`` the batch is repeated along the batch dimension, so several draws share one forward/backward
        pass (as many as :func:`~spikeshield.decision.draws_per_pass` allows), and the per-draw gradients are
        averaged. Parameters get no ``.grad``.
        """
        return self.objective_and_gradient(x_adv, y)[2]

    def objective_and_gradient(
        self,
        x_adv: torch.Tensor,
        y: torch.Tensor,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        gradient: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Per-sample objective, logits and input gradient at ``x_adv`` from EOT-batched passes.

        Args:
            x_adv: images ``[B, ...]``.
            y: labels ``[B]`` (targets if ``targeted``).
            loss_fn: per-sample loss ``(logits [m*B, classes], y [m*B]) -> [m*B]``; default the attack's loss.
            gradient: False skips the backward pass (and returns None for the gradient): see :meth:`objective`.

        Returns ``(objective [B], logits [B, classes], grad [B, ...])``, each the mean over the ``eot`` draws and
        detached. ``objective`` is what the attack ascends: the loss, or minus it for a targeted attack;
        ``grad`` is its input gradient (the same as :meth:`input_gradient` for the default loss).
        """
        m, batch = self.eot, x_adv.shape[0]
        loss_fn = self.loss_fn if loss_fn is None else loss_fn
        draws = decision.draws_per_pass(m, batch, x_adv.device)
        objective = logits_sum = grad_sum = 0
        for start in range(0, m, draws):
            k = min(draws, m - start)
            x_rep = x_adv.detach().repeat(k, *([1] * (x_adv.dim() - 1))).requires_grad_(gradient)
            frozen = frozen_statistics() if start else contextlib.nullcontext()  # ASSG: EOT draws after the first
            with frozen, torch.set_grad_enabled(gradient):
                logits = self.model(x_rep)
                per_sample = loss_fn(logits, y.repeat(k))
                per_sample = -per_sample if self.targeted else per_sample
                if gradient:
                    (grad,) = torch.autograd.grad(per_sample.sum(), x_rep)
                    grad_sum = grad_sum + grad.view(k, batch, *x_adv.shape[1:]).sum(0)
            self.forward_passes += x_rep.shape[0]
            objective = objective + per_sample.detach().view(k, batch).sum(0)
            logits_sum = logits_sum + logits.detach().view(k, batch, -1).sum(0)
        return objective / m, logits_sum / m, grad_sum / m if gradient else None

    def objective(self, x_adv: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample objective ``[B]`` and logits ``[B, classes]`` at ``x_adv``, each the mean over the ``eot`` draws,
        without a gradient (the value :meth:`objective_and_gradient` would give)."""
        objective, logits, _ = self.objective_and_gradient(x_adv, y, gradient=False)
        return objective, logits

    def succeeded(self, x_adv: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Per sample ``[B]``: has the attack succeeded at ``x_adv`` (misclassified; targeted: on the target)?

        ``logits`` are the (EOT-averaged) logits at ``x_adv``. On a deterministic model they decide. On a stochastic
        one a point they call a success is confirmed by the decision rule on fresh draws
        (:func:`spikeshield.decision.judge` with ``score_draws``), so an attack never stops at a borderline point
        that a fresh draw would still classify correctly."""
        pred = logits.argmax(1)
        hit = pred == y if self.targeted else pred != y
        if not self.stochastic or not hit.any():
            return hit
        idx = hit.nonzero().squeeze(1)
        correct, _, images = decision.judge(self.model, x_adv[idx], y[idx], self.score_draws, targeted=self.targeted)
        self.forward_passes += images
        hit[idx] = ~correct
        return hit

    def ascend(self, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor,
               update: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], steps: int) -> torch.Tensor:
        """Iterate ``x_adv <- update(x_adv, gradient)`` ``steps`` times from ``start`` and return, per sample, the
        best iterate after a step, never simply the last one: among the iterates that :meth:`succeeded` (confirmed
        on fresh draws for a stochastic model) the one of highest (EOT-averaged) objective, else the highest-objective
        iterate of all."""
        best = decision.StrongestPoint(x)  # a success beats a failure; among equals the higher objective wins
        everyone = torch.arange(x.shape[0], device=x.device)
        x_adv = start
        for i in range(steps):
            objective, logits, grad = self.objective_and_gradient(x_adv, y)
            if i:
                best.offer(everyone, x_adv, ~self.succeeded(x_adv, y, logits), -objective)
            x_adv = update(x_adv, grad)
        objective, logits = self.objective(x_adv, y)
        best.offer(everyone, x_adv, ~self.succeeded(x_adv, y, logits), -objective)
        return best.x

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Project ``x_adv`` into the L-inf eps-ball around ``x`` and into ``[0, 1]`` (unless ``clamp=False``)."""
        return self.box(torch.min(torch.max(x_adv, x - self.eps), x + self.eps))

    def box(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` clipped to the valid pixel range ``[0, 1]``; unchanged under the unclamped threat model."""
        return x.clamp(0.0, 1.0) if self.clamp else x

    def uniform_start(self, x: torch.Tensor) -> torch.Tensor:
        """A uniform random point of the eps-ball around ``x``, clipped by :meth:`box` (global torch RNG)."""
        return self.box(x + torch.empty_like(x).uniform_(-self.eps, self.eps))

    # --------------------------------------------------------------------------------------------- validation
    def _check_inputs(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Check images and labels against the model; return detached ``x`` and int64 ``y`` on ``x``'s device."""
        info = getattr(self.model, "info", None)
        if info is not None:
            check_images(x, info.channels, info.size, info.name)
        else:
            if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2 or x.numel() == 0:
                raise ValueError("images must be a non-empty floating-point tensor [B, C, H, W] in [0, 1]")
            if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
                raise ValueError("images must be finite and lie in [0, 1] (pixel space)")
        classes = getattr(info, "num_classes", None) or getattr(self.model, "num_classes", None)
        y = check_labels(y, x.shape[0], classes, "target labels" if self.targeted else "labels")
        return x.detach(), y.to(x.device)

