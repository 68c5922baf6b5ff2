"""FAB and FAB-T: the Fast Adaptive Boundary attack (L-inf), minimally distorted adversarial examples.

Paper: Croce, Hein, "Minimally distorted Adversarial Examples with a Fast Adaptive Boundary Attack", ICML 2020
(Algorithm 1, L-inf). The targeted variant FAB-T (one class's boundary at a time, the classes with the highest clean
logits in turn) is the one in AutoAttack's "standard" version (Croce & Hein, ICML 2020, "Reliable Evaluation ...").
Written from the paper and a reading of the authors' reference (fra31/auto-attack ``fab_base.py``, ``fab_pt.py``,
``fab_projections.py``); the differences are listed in ``docs/attacks.md``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from spikeshield.attacks.base import Attack, _check_positive_int, check_steps


def linf_projection(points: torch.Tensor, w: torch.Tensor, b: torch.Tensor, lo: float = 0.0,
                    hi: float = 1.0) -> torch.Tensor:
    """Exact L-inf projection onto a hyperplane intersected with the box ``[lo, hi]^D``, for a batch of problems.

    For each row ``t = points[i]`` (in the box), ``w[i]`` ``[D]`` and ``b[i]`` (scalar) returns the displacement
    ``d`` of smallest ``||d||_inf`` with ``<w, t + d> = b`` and ``t + d`` in ``[lo, hi]^D``. Where the hyperplane
    does not meet the box, ``d`` moves ``t`` to the box corner that comes closest to it (as the reference does).

    Orient ``w`` so that ``c = <w, t> - b >= 0`` must be removed. Pixel ``i`` can lower ``<w, z>`` by at most
    ``|w_i| * room_i`` (``room_i = t_i - lo`` where ``w_i > 0``, ``hi - t_i`` where ``w_i < 0``); within radius
    ``r`` the largest decrease is the concave, piecewise-linear ``g(r) = sum_i |w_i| min(r, room_i)``. The optimum is
    the ``r*`` with ``g(r*) = c``, found in one pass over the sorted rooms (no bisection loop), and
    ``d_i = -sign(w_i) min(r*, room_i)``.

    Shapes: ``points``, ``w`` ``[N, D]``, ``b`` ``[N]`` -> ``d`` ``[N, D]``.
    """
    c = (w * points).sum(1) - b
    flip = 1 - 2 * (c < 0).to(w.dtype)  # orient: the hyperplane lies where <w, z> is lower by c >= 0
    w, c = w * flip[:, None], c * flip
    room = torch.where(w > 0, points - lo, hi - points).clamp_min(0)  # how far each pixel can go the useful way
    room_sorted, order = room.sort(1)
    w_sorted = w.abs().gather(1, order)
    cum_w = w_sorted.cumsum(1)
    cum_wr = (w_sorted * room_sorted).cumsum(1)
    total = cum_w[:, -1:]
    reach = cum_wr + room_sorted * (total - cum_w)  # g(r) at the breakpoints r = room_sorted[:, k]: nondecreasing
    k = (reach < c[:, None]).sum(1, keepdim=True)  # r* lies in (room_sorted[k - 1], room_sorted[k]]
    below = (k - 1).clamp_min(0)
    saturated = torch.where(k > 0, cum_wr.gather(1, below), torch.zeros_like(total))  # pixels already at their room
    slope = torch.where(k > 0, total - cum_w.gather(1, below), total)  # weight of the pixels still free
    radius = ((c[:, None] - saturated) / slope.clamp_min(torch.finfo(w.dtype).tiny)).clamp_min(0)
    radius = torch.where(k == w.shape[1], math.inf, radius)  # the box does not reach the hyperplane: go to its corner
    return -torch.sign(w) * torch.minimum(room, radius)


def _check_number(value: Any, name: str, low: float, high: float, *, open_low: bool = False,
                  open_high: bool = False) -> float:
    """Return ``value`` as a float if it is a real number in the given interval, else raise a ``ValueError``."""
    interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in {interval}; got {value!r}") from None
    ok_low = number > low if open_low else number >= low
    ok_high = number < high if open_high else number <= high
    if not (ok_low and ok_high) or math.isnan(number):
        raise ValueError(f"{name} must be a number in {interval}; got {value!r}")
    return number


class FAB(Attack):
    """Fast Adaptive Boundary attack (L-inf): the smallest perturbation that changes the prediction.

    Each iteration linearises the model at the current point ``x1``: the boundary between the true class ``y`` and a
    class ``j`` is approximated by the hyperplane ``f_j - f_y + <g_j - g_y, z - x1> = 0`` (``f`` logits, ``g`` their
    input gradients). Untargeted FAB takes the class whose hyperplane is closest in L-inf
    (``|f_j - f_y| / ||g_j - g_y||_1``); FAB-T the given target. Both ``x1`` and the clean ``x`` are projected
    exactly (L-inf, inside ``[0, 1]``) onto that hyperplane, giving ``d1`` and ``d2``, and the step is the biased
    extrapolation ``x1 <- clip((1 - a) (x1 + eta d1) + a (x + eta d2))`` with
    ``a = min(||d1|| / (||d1|| + ||d2||), alpha_max)``. Whenever the new point is adversarial it is recorded if it is
    the smallest-norm one so far and pulled back towards ``x``: ``x1 <- x + beta (x1 - x)``.

    The first run starts at ``x``; further restarts (on the samples not yet adversarial within ``eps``) at a random
    point at L-inf distance ``eps / 2``. ``eps`` only scales those starts and decides success: per sample the attack
    returns the smallest adversarial point found if its distance is at most ``eps``, else ``x``. Samples the model
    already misclassifies are not attacked (distance 0).

    With ``n_target_classes = k > 0`` this is FAB-T: for each of the ``k`` classes other than ``y`` with the highest
    clean logits (best first, at most ``classes - 1``) it runs ``restarts`` targeted runs, each on the samples not yet
    adversarial within ``eps``. The goal stays untargeted: any misclassification counts.

    Args:
        model: classifier on ``[B, C, H, W]`` images in [0, 1].
        eps: L-inf budget in pixel units (success threshold and random-start scale).
        steps: iterations per run (default 100).
        restarts: runs per target (default 1; only the first starts at ``x``).
        eta: overshoot of the projection step (default 1.05), >= 1.
        beta: backward step towards ``x`` after an adversarial point (default 0.9), in (0, 1).
        alpha_max: largest weight of the step from ``x`` (default 0.1), in [0, 1].
        n_target_classes: 0 (default) for untargeted FAB; ``k > 0`` for FAB-T with ``k`` targets (AutoAttack: 9).
        **kwargs: ``eot``, ``grad`` of :class:`~spikeshield.attacks.base.Attack`. With ``eot=m`` logits,
            gradients and predictions are means over ``m`` draws of a stochastic model.

    Attributes:
        last_norms: after a call, ``[B]`` L-inf norm of the best adversarial perturbation found per sample (0 where
            the clean image is misclassified, ``inf`` where none was found; it may exceed ``eps``).

    Shapes: ``x`` ``[B, C, H, W]`` in [0, 1], ``y`` ``[B]`` int64 -> ``x_adv`` like ``x``. Random restarts use the
    global torch RNG (never seeded here).

    >>> atk = FAB(model, eps=8/255, n_target_classes=9)   # FAB-T as in AutoAttack "standard"   # doctest: +SKIP
    >>> x_adv = atk(x, y); atk.last_norms                                                     # doctest: +SKIP
    """

    name = "fab"

    def __init__(self, model: nn.Module, eps: float, *, steps: int = 100, restarts: int = 1, eta: float = 1.05,
                 beta: float = 0.9, alpha_max: float = 0.1, n_target_classes: int = 0, **kwargs) -> None:
        if kwargs.pop("targeted", False):
            raise ValueError("FAB does not take targeted=True: its goal is any misclassification; FAB-T picks its "
                             "own target classes (the top clean logits other than y) via n_target_classes=k, as "
                             "APGDT does")
        if "loss" in kwargs:
            raise ValueError("FAB uses no loss (it steps to linearised decision boundaries); do not pass loss=")
        super().__init__(model, eps, **kwargs)
        self.loss_name = "none"
        self.steps = check_steps(steps)
        self.restarts = _check_positive_int(restarts, "restarts")
        self.eta = _check_number(eta, "eta (overshoot)", 1.0, math.inf, open_high=True)
        self.beta = _check_number(beta, "beta (backward step)", 0.0, 1.0, open_low=True, open_high=True)
        self.alpha_max = _check_number(alpha_max, "alpha_max", 0.0, 1.0)
        if isinstance(n_target_classes, bool) or not isinstance(n_target_classes, int) or n_target_classes < 0:
            raise ValueError(f"n_target_classes must be an integer >= 0 (0: untargeted FAB); got {n_target_classes!r}")
        self.n_target_classes = n_target_classes
        self.last_norms: torch.Tensor | None = None

    # ---------------------------------------------------------------------------------------------- the math
    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Run the untargeted runs, or the targeted runs per target rank, on the samples not yet fooled within eps."""
        clean = self._mean_logits(x)
        norms = torch.where(self.succeeded(x, y, clean), 0.0, math.inf).to(x.dtype)
        done = norms == 0
        x_adv = x.clone()
        if self.n_target_classes == 0:
            targets: list[torch.Tensor | None] = [None]
        else:
            ranked = clean.scatter(1, y[:, None], -math.inf).argsort(1, descending=True)  # y is no target
            targets = [ranked[:, r] for r in range(min(self.n_target_classes, clean.shape[1] - 1))]
        for target in targets:
            for restart in range(self.restarts):
                idx = (~done).nonzero().squeeze(1)
                if idx.numel() == 0:
                    break
                x_best, run_norms = self._run(x[idx], y[idx], None if target is None else target[idx], restart > 0)
                norms[idx] = torch.minimum(norms[idx], run_norms)
                hit = run_norms <= self.eps
                x_adv[idx[hit]], done[idx[hit]] = x_best[hit], True
        self.last_norms = norms
        return x_adv

    def _run(self, x0: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
             random_start: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """One FAB run; returns the smallest adversarial point per sample and its L-inf distance (``inf``: none)."""
        n, view = x0.shape[0], (-1,) + (1,) * (x0.dim() - 1)
        lo, hi = (0.0, 1.0) if self.clamp else (-self.eps, 1.0 + self.eps)  # unclamped: a box holding every ball
        flat0 = x0.reshape(n, -1)
        x1 = x0.clone()
        if random_start:  # a random point at L-inf distance eps / 2, as the reference
            t = 2 * torch.rand_like(x0) - 1
            x1 = (x0 + 0.5 * self.eps * t / t.abs().flatten(1).amax(1).clamp_min(1e-12).view(view)).clamp(lo, hi)
        best = x0.clone()
        best_norm = torch.full((n,), math.inf, dtype=x0.dtype, device=x0.device)
        for _ in range(self.steps):
            df, dg = self._boundary(x1, y, target)  # boundary ~ {z: df + <dg, z - x1> = 0}
            flat1 = x1.reshape(n, -1)
            b = (dg * flat1).sum(1) - df
            d = linf_projection(torch.cat((flat1, flat0)), torch.cat((dg, dg)), torch.cat((b, b)), lo, hi)
            d1, d2 = d[:n], d[n:]
            size = d.abs().amax(1).clamp_min(1e-8)
            alpha = (size[:n] / (size[:n] + size[n:])).clamp(0.0, self.alpha_max)[:, None]
            x1 = ((1 - alpha) * (flat1 + self.eta * d1) + alpha * (flat0 + self.eta * d2)).clamp(lo, hi)
            x1 = x1.view_as(x0)

            adv = self.succeeded(x1, y, self._mean_logits(x1))  # a random model: confirmed on fresh draws
            dist = (x1 - x0).flatten(1).abs().amax(1)
            better = adv & (dist < best_norm)
            best[better], best_norm = x1[better], torch.where(better, dist, best_norm)
            x1 = torch.where(adv.view(view), x0 + self.beta * (x1 - x0), x1)
        return best, best_norm

    def _boundary(self, x1: torch.Tensor, y: torch.Tensor,
                  target: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logit difference ``f_j - f_y`` ``[n]`` and its input gradient ``[n, D]`` at ``x1``, for ``j`` the target
        or (untargeted) the class whose linearised boundary is closest in L-inf."""
        n = x1.shape[0]
        if target is not None:
            def diff(z: torch.Tensor, yy: torch.Tensor, t: torch.Tensor = target) -> torch.Tensor:
                tt = t.repeat(z.shape[0] // n)
                return z.gather(1, tt[:, None]).squeeze(1) - z.gather(1, yy[:, None]).squeeze(1)

            df, _, dg = self.objective_and_gradient(x1, y, loss_fn=diff)
            return df, dg.reshape(n, -1)
        rows = torch.arange(n, device=x1.device)
        logits, jac = self._logit_jacobian(x1)
        df = logits - logits[rows, y][:, None]
        dg = jac - jac[rows, y][:, None]
        dist = df.abs() / (dg.abs().sum(2) + 1e-12)
        dist[rows, y] = math.inf
        j = dist.argmin(1)
        return df[rows, j], dg[rows, j]

    # -------------------------------------------------------------------------------------- EOT-batched passes
    def _mean_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, classes]`` averaged over ``eot`` draws, without gradients (counted in forward_passes)."""
        m, batch = self.eot, x.shape[0]
        return self.logits(x.repeat(m, *([1] * (x.dim() - 1)))).view(m, batch, -1).mean(0)

    def _logit_jacobian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[B, classes]`` and their input gradients ``[B, classes, D]``, each the mean over ``eot`` draws.

        One EOT-batched forward pass (as :meth:`Attack.objective_and_gradient`), then one backward pass per class
        through the same graph, so every class's gradient comes from the same draws.
        """
        m, batch = self.eot, x.shape[0]
        x_rep = x.detach().repeat(m, *([1] * (x.dim() - 1))).requires_grad_(True)
        logits = self.model(x_rep)
        self.forward_passes += x_rep.shape[0]
        classes = logits.shape[1]
        grads = []
        for c in range(classes):
            (g,) = torch.autograd.grad(logits[:, c].sum(), x_rep, retain_graph=c < classes - 1)
            grads.append(g.reshape(m, batch, -1).mean(0))
        return logits.detach().view(m, batch, -1).mean(0), torch.stack(grads, 1)

    def settings(self) -> dict:
        """Base settings plus ``steps``, ``restarts``, ``eta``, ``beta``, ``alpha_max`` and ``n_target_classes``."""
        return {**super().settings(), "steps": self.steps, "restarts": self.restarts, "eta": self.eta,
                "beta": self.beta, "alpha_max": self.alpha_max, "n_target_classes": self.n_target_classes}
