"""The one decision rule for verdicts on a model, deterministic or random (DESIGN 7).

A verdict ("is this point classified correctly?", "did this attack fool the model here?") on a randomised model is
never a single forward pass. Each point is scored over ``k`` independent draws (:func:`score`; ``k`` =
:data:`DEFAULT_SCORE_DRAWS` for a stochastic model, 1 otherwise) and the verdict is the **majority vote**: the class
the deployed randomised model answers most often. A class wins only with strictly more votes than every other class,
so a tie never counts as correct (nor as a targeted success). Beside the majority accuracy, results carry each
point's fraction of correct draws and the **expected (per-draw) accuracy** with a 95% interval
(:func:`expected_accuracy`).

The per-sample worst case over several attacks is not a minimum over noisy verdicts: with ``m`` attacks each judged
on its own draws, the unlucky draws of all ``m`` are collected and the minimum manufactures breaks. Instead each
sample keeps its **strongest adversarial point** (:class:`StrongestPoint`: a point judged fooled beats one judged
correct, then the lowest EOT-averaged margin) and the final verdict is given on that point with fresh draws.

For a deterministic model (``k = 1``) every rule here reduces to ``argmax == y`` and the worst case to "correct clean
and under every attack". docs/evaluation.md explains the rule and the bias it removes.
"""

from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass

import torch
from torch import nn

#: verdict draws per point for a stochastic model (``score_draws``); a deterministic model is scored once
DEFAULT_SCORE_DRAWS = 10

#: EOT draws per gradient for attacks on a stochastic model when none is given
DEFAULT_EOT = 10

#: on the CPU a pass over more images than this is slower per image (cache-bound convolutions; LeNet T=5: 8.8 ms per
#: image at 64, 9.8 at 128, 13.2 at 640; benchmarks/eval_suite.py), so repeated draws are batched only up to it;
#: accelerators take all draws in one pass
CPU_IMAGES_PER_PASS = 64

#: images of the randomness probe on a model that does not declare ``is_stochastic``
PROBE_IMAGES = 8

#: two outputs differ when their gap exceeds ``atol + rtol * max|output|``
PROBE_ATOL, PROBE_RTOL = 1e-5, 1e-4

_PROBED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def draws_per_pass(draws: int, batch: int, device: torch.device) -> int:
    """How many of ``draws`` copies of a ``batch`` go through the model together: all of them on an accelerator; on
    the CPU as many as fit in :data:`CPU_IMAGES_PER_PASS` images (at least one)."""
    if device.type != "cpu":
        return draws
    return max(1, min(draws, CPU_IMAGES_PER_PASS // max(batch, 1)))


# ------------------------------------------------------------------------------------------------ is it random?
def declared_stochastic(model) -> bool | None:
    """``model.is_stochastic`` if the model declares it, else the result of an earlier probe, else None."""
    declared = getattr(model, "is_stochastic", None)
    if declared is not None:
        return bool(declared)
    try:
        return _PROBED.get(model)
    except TypeError:  # not weak-referenceable
        return None


def is_stochastic(model, x: torch.Tensor | None = None) -> bool:
    """Whether ``model`` is random: its declaration (``model.is_stochastic``) or, for a model that declares nothing
    (e.g. one spikeshield did not build), a probe: two calls on the same images (the first :data:`PROBE_IMAGES` of
    ``x``) that differ mean random. An observed random model gets a warning once (EOT and k-draw scoring are then
    switched on) and the result is remembered for that model object. Without ``x`` an undeclared, unprobed model
    counts as deterministic."""
    known = declared_stochastic(model)
    if known is not None or x is None:
        return bool(known)
    probe = x[:PROBE_IMAGES].detach()
    with torch.no_grad():
        first, second = model(probe).float(), model(probe).float()
    gap = (first - second).abs().max().item()
    random = not gap <= PROBE_ATOL + PROBE_RTOL * first.abs().max().item()
    if random:
        warnings.warn(f"the model does not declare is_stochastic, and two calls on the same images differ (max output "
                      f"gap {gap:.3g}): treating it as stochastic, so attacks average gradients over EOT draws and "
                      f"verdicts take the majority over {DEFAULT_SCORE_DRAWS} draws. Set model.is_stochastic = True "
                      f"(or False, if the variation is a bug such as state kept between calls) to silence this.",
                      UserWarning, stacklevel=3)
    try:
        _PROBED[model] = random
    except TypeError:
        pass
    return random


def remember(model, stochastic: bool) -> None:
    """Record what a caller observed about an undeclared model (e.g. the audit's randomness check), so later
    :func:`is_stochastic` calls neither probe nor warn again. A model that declares ``is_stochastic`` is left alone."""
    if getattr(model, "is_stochastic", None) is None:
        try:
            _PROBED[model] = bool(stochastic)
        except TypeError:
            pass


def score_draws_for(stochastic: bool, score_draws: int | None = None) -> int:
    """Verdict draws per point: ``score_draws`` if given (an integer >= 1), else :data:`DEFAULT_SCORE_DRAWS` for a
    stochastic model and 1 for a deterministic one."""
    if score_draws is None:
        return DEFAULT_SCORE_DRAWS if stochastic else 1
    if isinstance(score_draws, bool) or not isinstance(score_draws, int) or score_draws < 1:
        raise ValueError(f"score_draws must be an integer >= 1 or None; got {score_draws!r}")
    return score_draws


# ---------------------------------------------------------------------------------------------------- scoring
@dataclass
class Scores:
    """``k`` draws of a model on a batch: ``votes`` ``[B, classes]`` (how often each class was the argmax) and
    ``logits`` ``[B, classes]`` (the mean over draws)."""

    votes: torch.Tensor
    logits: torch.Tensor
    draws: int

    def wins(self, classes: torch.Tensor) -> torch.Tensor:
        """Per sample ``[B]``: ``classes[i]`` got strictly more votes than every other class (the majority verdict)."""
        own = self.votes.gather(1, classes[:, None]).squeeze(1)
        return own > self.votes.scatter(1, classes[:, None], -1).amax(1)

    def fraction(self, classes: torch.Tensor) -> torch.Tensor:
        """Per sample ``[B]``: the share of draws answering ``classes[i]``."""
        return self.votes.gather(1, classes[:, None]).squeeze(1).double() / self.draws

    def margin(self, y: torch.Tensor) -> torch.Tensor:
        """Per sample ``[B]``: ``z_y - max_{j != y} z_j`` of the mean logits (negative: fooled on average)."""
        z_y = self.logits.gather(1, y[:, None]).squeeze(1)
        return z_y - self.logits.scatter(1, y[:, None], float("-inf")).amax(1)


def score(model: nn.Module, x: torch.Tensor, draws: int) -> Scores:
    """Run ``model`` ``draws`` times on ``x`` (no gradient; draws batched as :func:`draws_per_pass` allows) and count
    the answers. The caller's context applies (e.g. the unclamped threat model)."""
    batch = x.shape[0]
    votes = logit_sum = None
    per_pass = draws_per_pass(draws, batch, x.device)
    with torch.no_grad():
        for start in range(0, draws, per_pass):
            k = min(per_pass, draws - start)
            logits = model(x.repeat(k, *([1] * (x.dim() - 1)))).detach().view(k, batch, -1)
            counts = torch.nn.functional.one_hot(logits.argmax(2), logits.shape[2]).sum(0)
            total = logits.double().sum(0)
            votes = counts if votes is None else votes + counts
            logit_sum = total if logit_sum is None else logit_sum + total
    return Scores(votes=votes, logits=logit_sum / draws, draws=draws)


def judge(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, draws: int, *, confirm: bool = False,
          targeted: bool = False) -> tuple[torch.Tensor, Scores, int]:
    """The decision rule at adversarial points: ``(still_correct [B], scores, images)``.

    ``still_correct`` is the majority verdict over ``draws`` draws (for ``targeted``, "the target did not win").
    With ``confirm`` (a stochastic model whose broken points leave a cascade) every point judged broken is scored
    again on fresh draws and counts as broken only if that verdict agrees, so one unlucky set of draws does not end a
    point's attack. ``scores`` is the first scoring (its margins and fractions); ``images`` counts the images sent
    through the model."""
    scores = score(model, x_adv, draws)
    ok = ~scores.wins(y) if targeted else scores.wins(y)
    images = x_adv.shape[0] * draws
    if confirm and not ok.all():
        broken = (~ok).nonzero().squeeze(1)
        again = score(model, x_adv[broken], draws)
        ok[broken] = ~again.wins(y[broken]) if targeted else again.wins(y[broken])
        images += broken.numel() * draws
    return ok, scores, images


class StrongestPoint:
    """Per sample, the strongest adversarial point offered so far: one judged fooled beats one judged correct; among
    equals the lower margin (EOT-averaged ``z_y - max_{j != y} z_j``) wins; the first offer wins ties.

    ``x`` holds the points (rows not ``offered`` yet hold the clean images), ``correct`` their verdicts and
    ``margin`` their margins."""

    def __init__(self, x: torch.Tensor) -> None:
        n = x.shape[0]
        self.x = x.clone()
        self.offered = torch.zeros(n, dtype=torch.bool, device=x.device)
        self.correct = torch.ones(n, dtype=torch.bool, device=x.device)
        self.margin = torch.full((n,), float("inf"), dtype=torch.float64, device=x.device)

    def offer(self, idx: torch.Tensor, x_adv: torch.Tensor, correct: torch.Tensor, margin: torch.Tensor) -> None:
        """Offer points ``x_adv`` for the samples ``idx`` with their verdicts and margins."""
        old_correct, old_margin = self.correct[idx], self.margin[idx]
        margin = margin.to(old_margin.dtype)
        stronger = (old_correct & ~correct) | ((old_correct == correct) & (margin < old_margin))
        take = idx[stronger]
        self.x[take] = x_adv[stronger].to(self.x.dtype)
        self.correct[take], self.margin[take] = correct[stronger], margin[stronger]
        self.offered[idx] = True


# ------------------------------------------------------------------------------------------- expected accuracy
def expected_accuracy(values: torch.Tensor | list[float], draws: int, z: float = 1.959964) -> dict[str, float]:
    """The expected (per-draw) accuracy from per-point fractions of correct draws, with a 95% interval.

    ``values`` are per-point fractions in [0, 1] (0 for a point that does not count, e.g. wrong clean); their mean
    estimates the accuracy of one random forward pass. The interval is a Wilson score interval on the effective
    number of independent trials ``n_eff = p (1 - p) / (s^2 / n)`` (``s^2`` the sample variance of the fractions),
    clipped to ``[n, n * draws]``: ``n`` when the draws of a point agree (only the points vary), ``n * draws`` when
    every draw is an independent coin. For ``draws = 1`` it is the plain Wilson interval on ``n`` points.

    Returns ``{"acc", "low", "high", "n_eff"}``.
    """
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    n = v.numel()
    if n == 0:
        raise ValueError("expected_accuracy needs at least one point")
    p = float(v.mean())
    var = float(v.var(correction=1)) if n > 1 else 0.0
    n_eff = float(n)
    if var > 0 and 0 < p < 1:
        n_eff = min(max(p * (1 - p) / (var / n), n), n * draws)
    denom = 1 + z * z / n_eff
    centre = (p + z * z / (2 * n_eff)) / denom
    half = z * math.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff * n_eff)) / denom
    return {"acc": p, "low": max(0.0, centre - half), "high": min(1.0, centre + half), "n_eff": n_eff}
