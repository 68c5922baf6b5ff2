"""APGD and APGD-T: step-size-free PGD with momentum, checkpoints and per-sample best points.

Paper: Croce, Hein, "Reliable Evaluation of Adversarial Robustness with an Ensemble of Diverse Parameter-free
Attacks", ICML 2020 (Algorithm 1; DLR loss eq. 5, targeted DLR eq. 6). Distance: L-inf. Written from the paper and
a reading of the authors' reference (fra31/auto-attack ``autopgd_base.py``); the differences are listed in
``docs/attacks.md``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from spikeshield.attacks.base import Attack, _check_positive_int, check_steps
from spikeshield.attacks.losses import targeted_dlr_loss

#: weight of the new step against the last move (the paper's alpha = 0.75; 1.0 in the first iteration)
MOMENTUM = 0.75


class APGD(Attack):
    """Auto-PGD (L-inf): PGD whose step size starts at ``2 eps`` and halves at checkpoints where progress stalls.

    Each run starts at a random point on the eps-ball's surface (``eps * t / ||t||_inf``, ``t`` uniform in
    ``[-1, 1]``); each iteration takes a signed-gradient step, mixes it with the last move (momentum 0.75) and
    projects. At checkpoints (after ``0.22 * steps`` iterations, then ever shorter intervals, shrinking by
    ``0.03 * steps`` down to ``0.06 * steps``) a sample's step size is halved and it restarts from its best point
    when the loss rose in at most ``rho`` of the interval's steps, or when the step was not halved at the last
    checkpoint and the best loss has not improved since. Further restarts run only on samples not yet fooled.

    Per sample the attack returns a point where the model was fooled (misclassified; for ``targeted=True``,
    classified as the target) if any iterate of any restart fooled it, otherwise the point of highest loss seen.

    Args:
        model: classifier on ``[B, C, H, W]`` images in [0, 1].
        eps: L-inf budget in pixel units.
        loss: ``"ce"`` (default, as the reference) or ``"dlr"`` (difference of logits ratio, >= 3 classes), or a
            callable per-sample loss.
        steps: iterations per restart (default 100, as the reference).
        restarts: random restarts (default 1).
        rho: oscillation threshold of the step-size rule (default 0.75).
        **kwargs: ``targeted``, ``eot``, ``grad`` of :class:`~spikeshield.attacks.base.Attack`. With ``eot=m``
            every gradient, loss and prediction is the mean over ``m`` draws of a stochastic model.

    Shapes: ``x`` ``[B, C, H, W]`` in [0, 1], ``y`` ``[B]`` int64 -> ``x_adv`` like ``x``. Random starts use the
    global torch RNG (never seeded here).

    >>> atk = APGD(model, eps=8/255, loss="ce", steps=100, restarts=1)   # doctest: +SKIP
    >>> x_adv = atk(x, y)                                                # doctest: +SKIP
    """

    name = "apgd"
    #: first step size of every run, in units of ``eps`` (the paper's ``2 eps``); subclasses may change it
    initial_step: float = 2.0

    def __init__(self, model, eps: float, loss: str | Callable = "ce", steps: int = 100, restarts: int = 1,
                 rho: float = 0.75, **kwargs) -> None:
        super().__init__(model, eps, loss=loss, **kwargs)
        self.steps = check_steps(steps)
        self.restarts = _check_positive_int(restarts, "restarts")
        try:
            self.rho = float(rho)
        except (TypeError, ValueError):
            raise ValueError(f"rho must be a number in (0, 1]; got {rho!r}") from None
        if not 0 < self.rho <= 1:
            raise ValueError(f"rho must be a number in (0, 1]; got {rho!r}")

    # ---------------------------------------------------------------------------------------------- the math
    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Run ``restarts`` APGD runs, each on the samples not fooled yet; keep each sample's best point."""
        best = _Best(x)
        for _ in range(self.restarts):
            idx = best.open_indices()
            if idx.numel() == 0:
                break
            best.update(idx, *self._run(x[idx], y[idx]))
        return best.x_adv

    def _random_start(self, x: torch.Tensor) -> torch.Tensor:
        """A random point on the eps-ball's surface (L-inf), clipped to [0, 1] (global torch RNG)."""
        t = 2 * torch.rand_like(x) - 1
        t = t / t.abs().flatten(1).amax(1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
        return self.box(x + self.eps * t)

    def _run(self, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable | None = None):
        """One APGD run from a random start: :meth:`_step` moves the iterate (the first step size is
        ``initial_step * eps``), checkpoints halve it per sample and send stalled samples back to their best point.

        Returns ``(x_best, loss_best, fooled, x_fooled)``: the highest-objective point and its objective ``[B]``,
        whether any iterate fooled the model ``[B]`` (on a stochastic model: confirmed by the decision rule on fresh
        draws, :meth:`~spikeshield.attacks.base.Attack.succeeded`), and an iterate that did (valid where ``fooled``;
        the last one on a deterministic model, the first confirmed one on a stochastic model).
        """
        n = self.steps
        interval, interval_min, interval_decr = max(int(0.22 * n), 1), max(int(0.06 * n), 1), max(int(0.03 * n), 1)
        view = (-1,) + (1,) * (x.dim() - 1)

        x_adv = self._random_start(x)
        loss, logits, grad = self.objective_and_gradient(x_adv, y, loss_fn)
        fooled = self.succeeded(x_adv, y, logits)
        x_fooled = x_adv.clone()
        x_best, loss_best, grad_best = x_adv.clone(), loss.clone(), grad.clone()
        step = torch.full((x.shape[0],), self.initial_step * self.eps, dtype=x.dtype, device=x.device)
        history = [loss]  # objective at every iterate (the oscillation check counts increases)
        since_check, best_at_check = 0, loss_best.clone()
        reduced_at_check = torch.ones_like(fooled)
        state = self._init_state(x_adv)
        for i in range(n):
            x_adv = self._step(x_adv, grad, step.view(view), x, i, state)

            loss, logits, grad = self.objective_and_gradient(x_adv, y, loss_fn)
            now = torch.zeros_like(fooled)
            # a deterministic model keeps its last successful iterate; a random one its first, confirmed on fresh
            # draws (re-confirming every later iterate would cost score_draws passes per step)
            todo = (~fooled).nonzero().squeeze(1) if self.stochastic else torch.arange(len(y), device=y.device)
            if todo.numel():
                now[todo] = self.succeeded(x_adv[todo], y[todo], logits[todo])
            x_fooled[now] = x_adv[now]
            fooled |= now
            better = loss > loss_best
            x_best[better], grad_best[better] = x_adv[better], grad[better]
            loss_best = torch.where(better, loss, loss_best)
            history.append(loss)

            since_check += 1
            if since_check == interval:
                recent = torch.stack(history[-interval - 1:])
                increases = (recent[1:] > recent[:-1]).sum(0)
                oscillating = increases <= self.rho * interval
                stalled = ~reduced_at_check & (best_at_check >= loss_best)
                reduce = oscillating | stalled
                reduced_at_check, best_at_check = reduce, loss_best.clone()
                step = torch.where(reduce, step / 2, step)
                x_adv = torch.where(reduce.view(view), x_best, x_adv)
                grad = torch.where(reduce.view(view), grad_best, grad)
                interval, since_check = max(interval - interval_decr, interval_min), 0
        if self.stochastic and fooled.any():  # the highest-loss point instead, where fresh draws confirm it fools
            idx = fooled.nonzero().squeeze(1)
            _, logits = self.objective(x_best[idx], y[idx])
            better = self.succeeded(x_best[idx], y[idx], logits)
            x_fooled[idx[better]] = x_best[idx[better]]
        return x_best, loss_best, fooled, x_fooled

    def _init_state(self, x_adv: torch.Tensor) -> dict[str, torch.Tensor]:
        """State of the update rule at the start of a run: APGD keeps the previous iterate (for its momentum)."""
        return {"prev": x_adv}

    def _step(self, x_adv: torch.Tensor, grad: torch.Tensor, step: torch.Tensor, x: torch.Tensor, i: int,
              state: dict[str, torch.Tensor]) -> torch.Tensor:
        """The next iterate: a signed-gradient step mixed with the last move (momentum 0.75; none when ``i == 0``).

        Args:
            x_adv: the current iterate ``[B, ...]``; grad: the objective's input gradient there.
            step: per-sample step sizes, shaped ``[B, 1, ..., 1]``; x: the clean images (centre of the ball).
            i: the iteration (0-based); state: the dict from :meth:`_init_state`, updated in place.

        Returns the projected next iterate. Subclasses override this (and :meth:`_init_state`) to change the update
        rule while keeping the checkpoints, the best-point bookkeeping and the restarts of :meth:`_run`.
        """
        a = MOMENTUM if i > 0 else 1.0
        z = self.project(x_adv + step * grad.sign(), x)
        x_new = self.project(x_adv + a * (z - x_adv) + (1 - a) * (x_adv - state["prev"]), x)
        state["prev"] = x_adv
        return x_new

    def settings(self) -> dict:
        """Base settings plus ``steps``, ``restarts`` and ``rho``."""
        return {**super().settings(), "steps": self.steps, "restarts": self.restarts, "rho": self.rho}


class APGDT(APGD):
    """APGD on the targeted DLR loss, once per target class: the ``n_target_classes`` classes other than ``y`` with
    the highest clean logits, best first. Each target runs ``restarts`` times on the samples not fooled yet.

    The goal is untargeted (``y`` holds the true labels; success = misclassified); the targets only steer the loss.
    Per sample it returns a misclassified point if any run found one, else the point of highest targeted DLR.

    Args:
        model: classifier on ``[B, C, H, W]`` images in [0, 1] with at least 3 classes.
        eps: L-inf budget in pixel units.
        steps: iterations per run (default 100).
        restarts: runs per target class (default 1).
        n_target_classes: how many target classes to try (default 9; at most ``classes - 1`` are used).
        rho: oscillation threshold of the step-size rule (default 0.75).
        **kwargs: ``eot``, ``grad`` of :class:`~spikeshield.attacks.base.Attack` (``loss`` and
            ``targeted`` are fixed by the method).

    Shapes: ``x`` ``[B, C, H, W]`` in [0, 1], ``y`` ``[B]`` int64 -> ``x_adv`` like ``x``.

    >>> atk = APGDT(model, eps=8/255, steps=100, n_target_classes=9)   # doctest: +SKIP
    >>> x_adv = atk(x, y)                                              # doctest: +SKIP
    """

    name = "apgd-t"

    def __init__(self, model, eps: float, steps: int = 100, restarts: int = 1, n_target_classes: int = 9,
                 rho: float = 0.75, **kwargs) -> None:
        if kwargs.pop("targeted", False):
            raise ValueError("APGDT picks its own target classes and counts any misclassification as success; "
                             "for one given target use APGD(..., targeted=True)")
        if "loss" in kwargs:
            raise ValueError("APGDT always uses the targeted DLR loss; for another loss use APGD(..., loss=...)")
        super().__init__(model, eps, loss="dlr", steps=steps, restarts=restarts, rho=rho, **kwargs)
        self.loss_name = "dlr-targeted"
        self.n_target_classes = _check_positive_int(n_target_classes, "n_target_classes")

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """For each target rank, run APGD on the targeted DLR loss on the samples not fooled yet. The targets are
        ranked once per sample, from the clean logits averaged over the ``eot`` draws."""
        best = _Best(x)
        _, logits = self.objective(x, y)
        ranking = logits.scatter(1, y[:, None], float("-inf")).argsort(1, descending=True)  # the true class last
        for rank in range(min(self.n_target_classes, logits.shape[1] - 1)):
            for _ in range(self.restarts):
                idx = best.open_indices()
                if idx.numel() == 0:
                    return best.x_adv
                xs, ys = x[idx], y[idx]
                target = ranking[idx, rank]

                def loss_fn(z: torch.Tensor, yy: torch.Tensor, target: torch.Tensor = target) -> torch.Tensor:
                    return targeted_dlr_loss(z, yy, target.repeat(z.shape[0] // target.shape[0]))

                best.update(idx, *self._run(xs, ys, loss_fn))
        return best.x_adv

    def settings(self) -> dict:
        """APGD settings plus ``n_target_classes``."""
        return {**super().settings(), "n_target_classes": self.n_target_classes}


class _Best:
    """Per-sample best points over runs: a fooling point once found, otherwise the highest-objective point."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x_adv = x.clone()
        self.done = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        self.loss = torch.full((x.shape[0],), float("-inf"), dtype=x.dtype, device=x.device)

    def open_indices(self) -> torch.Tensor:
        """Indices of the samples not fooled yet."""
        return (~self.done).nonzero().squeeze(1)

    def update(self, idx: torch.Tensor, x_best: torch.Tensor, loss_best: torch.Tensor, fooled: torch.Tensor,
               x_fooled: torch.Tensor) -> None:
        """Merge one run on the samples ``idx``."""
        keep = ~fooled & (loss_best > self.loss[idx])
        self.x_adv[idx[keep]], self.loss[idx[keep]] = x_best[keep], loss_best[keep]
        self.x_adv[idx[fooled]], self.done[idx[fooled]] = x_fooled[fooled], True
