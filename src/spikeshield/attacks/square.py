"""Square attack (L-inf): a score-based black-box attack by random search over square-shaped updates.

Paper: Andriushchenko, Croce, Flammarion, Hein, "Square Attack: a query-efficient black-box adversarial attack via
random search", ECCV 2020 (Algorithm 1 and the L-inf sampling distribution, Algorithm 2). Written from the paper
and a reading of the authors' reference (fra31/auto-attack ``square.py``, its L-inf branch); the differences are
listed in ``docs/attacks.md``. The attack only reads the model's logits: it never computes a gradient.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from spikeshield.attacks.base import Attack, _check_positive_int
from spikeshield.attacks.losses import cw_loss

#: attack losses of :class:`Square` -> the base-class loss whose ascent they are (the margin is minus the CW loss)
SQUARE_LOSSES = {"margin": "cw", "ce": "ce"}

#: the reference's schedule of the square size: (last iteration of 10000, fraction of ``p_init``), in order
P_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256))


def p_selection(p_init: float, it: int, n_queries: int) -> float:
    """Fraction ``p`` of the image a square covers at iteration ``it`` (0-based) of a ``n_queries`` budget.

    The reference's piecewise-constant schedule for 10000 queries, rescaled to ``n_queries``: ``p_init`` up to
    iteration 10, then halved at iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 (``p_init / 512``
    after 8000).
    """
    it = int(it / n_queries * 10000)
    for last, divisor in P_SCHEDULE:
        if it <= last:
            return p_init / divisor
    return p_init / 512


class Square(Attack):
    """Square attack (L-inf): random search over square windows set to a corner of the eps-ball.

    Each run starts at vertical stripes: every column of every channel is shifted by ``+eps`` or ``-eps`` (random
    signs; clipped to [0, 1]). Each iteration draws, per sample, a square window of side
    ``s = max(round(sqrt(p * H * W)), 1)`` (at most ``min(H, W)``) at a uniformly random position and one random
    sign per channel, moves the window's pixels by ``+-2 eps`` (one value per channel) and projects back into the
    eps-ball and [0, 1], so the window lands on a corner of the ball. The candidate replaces the sample's current
    point only if it lowers the loss (or fools the model). ``p`` starts at ``p_init`` and is halved on the
    reference's schedule (:func:`p_selection`). Only samples not yet fooled are queried; the run stops early when
    all are fooled. Further restarts run from new stripes on the samples not fooled yet.

    The loss to minimise is the margin ``z_y - max_{j != y} z_j`` (default) or minus the cross-entropy; with
    ``targeted=True`` (``y`` = target labels) it is ``max_{j != t} z_j - z_t`` or the cross-entropy towards the
    target. A sample is fooled when its margin is negative: misclassified (targeted: classified as the target).
    Per sample the attack returns the first fooling point found, otherwise the lowest-loss point seen.

    Args:
        model: classifier on ``[B, C, H, W]`` images in [0, 1]; only its outputs are used.
        eps: L-inf budget in pixel units.
        n_queries: query budget per sample and restart (default 5000), the first point included.
        p_init: initial fraction of the image covered by a square, in (0, 1] (default 0.8).
        restarts: random restarts (default 1).
        loss: ``"margin"`` (default) or ``"ce"``.
        **kwargs: ``targeted``, ``eot``, ``grad`` of :class:`~spikeshield.attacks.base.Attack`. With
            ``eot=m`` every query sends the batch ``m`` times through the model in one pass and uses the mean
            logits; ``grad`` is accepted and has no effect (no gradients are taken).

    Attributes:
        last_queries: per-sample number of queries of the last call (int64 ``[B]``, all restarts; each query costs
            ``eot`` forward passes).

    Shapes: ``x`` ``[B, C, H, W]`` in [0, 1], ``y`` ``[B]`` int64 -> ``x_adv`` like ``x``. Random stripes, windows and
    signs use the global torch RNG (never seeded here).

    >>> atk = Square(model, eps=8/255, n_queries=5000, p_init=0.8)   # doctest: +SKIP
    >>> x_adv = atk(x, y); atk.last_queries                          # doctest: +SKIP
    """

    name = "square"

    def __init__(self, model, eps: float, *, n_queries: int = 5000, p_init: float = 0.8, restarts: int = 1,
                 loss: str = "margin", **kwargs) -> None:
        if not isinstance(loss, str) or loss not in SQUARE_LOSSES:
            raise ValueError(f"loss must be 'margin' or 'ce' for the Square attack; got {loss!r}")
        super().__init__(model, eps, loss=SQUARE_LOSSES[loss], **kwargs)
        self.loss_name = loss
        self.n_queries = _check_positive_int(n_queries, "n_queries")
        self.restarts = _check_positive_int(restarts, "restarts")
        try:
            self.p_init = float(p_init)
        except (TypeError, ValueError):
            raise ValueError(f"p_init must be a number in (0, 1]; got {p_init!r}") from None
        if not 0 < self.p_init <= 1:
            raise ValueError(f"p_init must be a number in (0, 1]; got {p_init!r}")
        self.last_queries: torch.Tensor | None = None

    # ---------------------------------------------------------------------------------------------- the math
    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Run ``restarts`` Square runs, each on the samples not fooled yet; keep each sample's best point."""
        if x.dim() != 4:
            raise ValueError(f"the Square attack takes images [B, C, H, W]; got shape {list(x.shape)}")
        with torch.no_grad():
            x_adv = x.clone()
            done = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
            best = torch.full((x.shape[0],), float("inf"), dtype=x.dtype, device=x.device)
            queries = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
            for _ in range(self.restarts):
                idx = (~done).nonzero().squeeze(1)
                if idx.numel() == 0:
                    break
                x_run, loss, fooled, used = self._run(x[idx], y[idx])
                queries[idx] += used
                keep = fooled | (loss < best[idx])
                x_adv[idx[keep]], best[idx[keep]] = x_run[keep], loss[keep].to(best.dtype)
                done[idx[fooled]] = True
            self.last_queries = queries
        return x_adv

    def _query(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One query per sample: ``(margin [n], loss [n])``, both to minimise; margin < 0 means fooled.

        With ``eot = m`` the batch is repeated ``m`` times in one forward pass and the logits are averaged.
        """
        m, n = self.eot, x.shape[0]
        logits = self.logits(x.repeat(m, *([1] * (x.dim() - 1)))).view(m, n, -1).mean(0)
        sign = 1.0 if self.targeted else -1.0  # the base losses are to ascend (untargeted) / descend (targeted)
        margin = sign * cw_loss(logits, y)
        if self.stochastic and (margin < 0).any():  # a random model: a success counts once fresh draws confirm it
            hit = margin < 0
            confirmed = self.succeeded(x[hit], y[hit], logits[hit])
            margin[hit] = torch.where(confirmed, margin[hit], torch.zeros_like(margin[hit]))
        return margin, sign * self.loss_fn(logits, y)

    def _run(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One Square run from random vertical stripes on the images ``x`` ``[n, C, H, W]``.

        Returns ``(x_best, loss_best, fooled, queries)``: per sample the current point (the fooling point where
        ``fooled``), its loss, whether it fooled the model and the number of queries spent.
        """
        n, c, h, w = x.shape
        eps = self.eps
        signs = torch.randint(0, 2, (n, c, 1, w), device=x.device).to(x.dtype) * 2 - 1
        x_best = self.box(x + eps * signs)
        margin_best, loss_best = self._query(x_best, y)
        queries = torch.ones(n, dtype=torch.long, device=x.device)
        rows = torch.arange(h, device=x.device)
        cols = torch.arange(w, device=x.device)
        for it in range(self.n_queries - 1):
            idx = (margin_best >= 0).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            k = idx.numel()
            p = p_selection(self.p_init, it, self.n_queries)
            s = min(max(int(round(math.sqrt(p * h * w))), 1), h, w)
            top = torch.randint(0, h - s + 1, (k, 1), device=x.device)
            left = torch.randint(0, w - s + 1, (k, 1), device=x.device)
            window = (((rows >= top) & (rows < top + s))[:, None, :, None]
                      & ((cols >= left) & (cols < left + s))[:, None, None, :])
            step = 2 * eps * (torch.randint(0, 2, (k, c, 1, 1), device=x.device).to(x.dtype) * 2 - 1)
            x_cur = x[idx]
            x_new = self.project(torch.where(window, x_best[idx] + step, x_best[idx]), x_cur)

            margin, loss = self._query(x_new, y[idx])
            queries[idx] += 1
            accept = (loss < loss_best[idx]) | (margin < 0)
            x_best[idx] = torch.where(accept.view(-1, 1, 1, 1), x_new, x_best[idx])
            loss_best[idx] = torch.where(accept, loss, loss_best[idx])
            margin_best[idx] = torch.where(accept, margin, margin_best[idx])
        return x_best, loss_best, margin_best < 0, queries

    def settings(self) -> dict[str, Any]:
        """Base settings (``loss`` is ``"margin"`` or ``"ce"``) plus ``n_queries``, ``p_init`` and ``restarts``."""
        return {**super().settings(), "n_queries": self.n_queries, "p_init": self.p_init, "restarts": self.restarts}
