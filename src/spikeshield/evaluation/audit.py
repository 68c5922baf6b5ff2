"""Gradient-obfuscation audit: the Athalye et al. (ICML 2018) checklist plus SNN-specific checks (METHODS 5).

A robust-accuracy number is only as good as the attack behind it. :func:`audit` runs the checks that expose an attack
failing for the wrong reason (randomness, masked or absent gradients, hidden state, a broken eps handling) and
returns an :class:`AuditReport`: which flags were raised and, for every check, raised or not, the numbers it looked
at. docs/flags.md explains each flag and what to do about it.

Each flag is raised only on evidence. The thresholds are the module constants below:

================================  =====================================================================================
flag                              raised when
================================  =====================================================================================
``stochastic``                    :data:`STOCHASTIC_CALLS` calls on the same images give logits that differ by more
                                  than ``OUTPUT_ATOL + OUTPUT_RTOL * max|logit|`` (and the variation is not the state
                                  leak below); the report also says whether ``model.is_stochastic`` agrees
``state_leak``                    with the random generator reset to the same seed before every call, the logits for
                                  a batch A differ between the first and the second call, or after a call on another
                                  batch B (A, A, B, A; :data:`PROBE_SIZE` images; same tolerance)
``zero_gradients``                the input gradient of the cross-entropy loss (the model's own backward) is exactly
                                  zero or not finite for more than :data:`ZERO_GRAD_SHARE` of the images
``single_step_beats_iterative``   FGSM leaves fewer points robust than the best iterative gradient attack by more
                                  than :data:`ACC_TOL` of the images and at least :data:`MIN_SAMPLES` images
``blackbox_beats_whitebox``       a black-box attack (Square with :data:`BLACKBOX_QUERIES` queries, a transfer
                                  attack from ``source``) beats the best white-box attack by the same margin
``eps_increase_no_effect``        the iterative attack's robust accuracy at :data:`EPS_FACTORS` x eps (a fixed step
                                  size scaled with eps) does not fall by that margin from eps to the largest budget
                                  (with at least :data:`MIN_SAMPLES` robust points at eps to lose), or rises by it
                                  between two consecutive budgets
``unbounded_not_successful``      PGD at eps = 1 (:data:`UNBOUNDED_STEPS` steps of :data:`UNBOUNDED_ALPHA`) fools less
                                  than :data:`UNBOUNDED_SUCCESS` of the clean-correct images
``random_beats_gradient``         random points of the eps-ball (``n_random`` per image: half uniform, half corners)
                                  fool images that every white-box attack left robust, more than :data:`ACC_TOL` of the
                                  images and at least :data:`MIN_SAMPLES`
``gradient_dependent``            spiking models only: the robust accuracy under :data:`GRADIENT_ATTACK` run through
                                  each backward pass of :data:`AUDIT_GRADIENTS` (the model's own surrogate, others,
                                  BPTR, RGA, the ANN twin) spreads by more than :data:`GRADIENT_SPREAD` (and at least
                                  :data:`MIN_SAMPLES` images) between the best and the worst mode
================================  =====================================================================================

A model that is stochastic (declared by ``model.is_stochastic`` or observed) is attacked with EOT: ``eot`` draws per
gradient, :data:`~spikeshield.evaluation.robustness.DEFAULT_EOT` unless given; the report records the number.

>>> report = audit(model, x, y, eps=8/255)      # doctest: +SKIP
>>> report.flags                                # e.g. {"zero_gradients", "random_beats_gradient"}   # doctest: +SKIP
>>> report.save_json("run/audit.json"); report.save_markdown("run/audit.md")            # doctest: +SKIP
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from spikeshield import decision
from spikeshield.attacks.base import Attack, check_labels
from spikeshield.evaluation.audit_checks import (
    _build_blackbox,
    _build_whitebox,
    _check_eps_increase,
    _check_gradient_modes,
    _check_random,
    _check_unbounded,
    _gradient_labels,
)
from spikeshield.evaluation.audit_probes import _check_state_leak, _check_stochastic, _check_zero_gradients
from spikeshield.evaluation.audit_report import AUDIT_SCHEMA, CHECKS, AuditReport
from spikeshield.evaluation.flags import (
    ACC_TOL,
    AUDIT_GRADIENTS,
    BLACKBOX_QUERIES,
    DEFAULT_ATTACKS,
    EPS_FACTORS,
    GRADIENT_ATTACK,
    GRADIENT_SPREAD,
    MIN_SAMPLES,
    N_RANDOM,
    OUTPUT_ATOL,
    OUTPUT_RTOL,
    PROBE_SIZE,
    STOCHASTIC_CALLS,
    UNBOUNDED_ALPHA,
    UNBOUNDED_STEPS,
    UNBOUNDED_SUCCESS,
    ZERO_GRAD_SHARE,
    _attack_kind,
    _blackbox_check,
    _single_step_check,
    flags_from_result,
)
from spikeshield.evaluation.result import provenance
from spikeshield.evaluation.robustness import DEFAULT_EOT, _device_of, evaluate
from spikeshield.validation import check_eps

__all__ = ["ACC_TOL", "AUDIT_GRADIENTS", "AUDIT_SCHEMA", "BLACKBOX_QUERIES", "CHECKS", "DEFAULT_ATTACKS",
           "EPS_FACTORS", "GRADIENT_ATTACK", "GRADIENT_SPREAD", "MIN_SAMPLES", "N_RANDOM", "OUTPUT_ATOL", "OUTPUT_RTOL",
           "PROBE_SIZE", "STOCHASTIC_CALLS", "UNBOUNDED_ALPHA", "UNBOUNDED_STEPS",
           "UNBOUNDED_SUCCESS", "ZERO_GRAD_SHARE", "AuditReport", "audit", "flags_from_result"]


# ------------------------------------------------------------------------------------------------------ the audit
def audit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 8 / 255,
    *,
    attacks: str | Sequence[str | Attack] | None = None,
    blackbox: str | None = "square",
    source: nn.Module | None = None,
    eot: int | None = None,
    n_random: int = N_RANDOM,
    seed: int = 0,
    progress: bool = True,
    batch_size: int = 256,
    n_queries: int = BLACKBOX_QUERIES,
    unbounded_steps: int = UNBOUNDED_STEPS,
    gradients: Sequence[str] | None = None,
    command: str | None = None,
    score_draws: int | None = None,
) -> AuditReport:
    """Run the gradient-obfuscation checklist on ``model`` with images ``x`` and labels ``y``.

    Args:
        model: classifier on ``[B, C, H, W]`` images in [0, 1] (call ``model.eval()`` first); never modified.
        x: images ``[N, C, H, W]`` in [0, 1] (a few hundred are plenty; 32 already show gross problems).
        y: labels ``[N]``.
        eps: L-inf budget in pixel units (> 0).
        attacks: white-box attacks at ``eps``: registry names (list or ``"fgsm,pgd20"``) or :class:`Attack`
            instances with this eps; None: :data:`DEFAULT_ATTACKS`. At least one iterative gradient attack is
            needed; the first one given by name is also run at the larger budgets (``eps_increase_no_effect``).
        blackbox: registry name of a black-box attack (``"square"``, built with ``n_queries``; ``"gaussian"``),
            or None to skip it.
        source: a source model for a :class:`~spikeshield.attacks.Transfer` attack (the iterative attack crafted
            on it), added to the black-box attacks.
        eot: EOT draws per gradient for a stochastic model; None: :data:`DEFAULT_EOT` if the model is stochastic
            (declared or observed), else 1.
        n_random: random points per image for ``random_beats_gradient`` (0 skips the check).
        seed: the global torch RNG is seeded with it (as :func:`evaluate` does).
        progress: progress bars of the evaluations (stderr).
        batch_size: images per forward pass / attack call.
        n_queries: query budget of a score-based black-box attack.
        unbounded_steps: steps of the unbounded (eps = 1) PGD.
        gradients: backward passes for ``gradient_dependent`` (registry gradient spellings such as ``"own"``,
            ``"triangle-0.5"``, ``"rga"``, ``"ann"``); None: :data:`AUDIT_GRADIENTS`; an empty list skips the check.
        command: the command line, recorded in the report.
        score_draws: draws behind each verdict (majority vote, :mod:`spikeshield.decision`); None:
            :data:`~spikeshield.decision.DEFAULT_SCORE_DRAWS` if the model is stochastic (declared or observed),
            else 1.

    Returns:
        :class:`AuditReport`.
    """
    eps = check_eps(eps)
    if eps == 0:
        raise ValueError("audit needs eps > 0 (pixel units, e.g. 8/255)")
    for value, name in ((batch_size, "batch_size"), (unbounded_steps, "unbounded_steps"), (n_queries, "n_queries")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 0:
        raise ValueError(f"n_random must be an integer >= 0; got {n_random!r}")
    if eot is not None and (isinstance(eot, bool) or not isinstance(eot, int) or eot < 1):
        raise ValueError(f"eot must be an integer >= 1 or None; got {eot!r}")
    modes = _gradient_labels(AUDIT_GRADIENTS if gradients is None else gradients)
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or x.dim() < 2 or y.shape != x.shape[:1]:
        raise ValueError("audit(model, x, y): x must be an image tensor [N, C, H, W] and y a label tensor [N]")
    if x.shape[0] == 0:
        raise ValueError("no examples to audit: x is empty")
    started = time.perf_counter()
    device = _device_of(model)
    x = x.to(device)
    classes = getattr(getattr(model, "info", None), "num_classes", None) or getattr(model, "num_classes", None)
    y = check_labels(y.to(device), x.shape[0], classes)
    n = x.shape[0]
    torch.manual_seed(seed)
    evidence: dict[str, dict[str, Any]] = {}

    # randomness and hidden state
    declared = bool(decision.declared_stochastic(model))
    evidence["state_leak"], leak = _check_state_leak(model, x, seed, declared)
    evidence["stochastic"], observed = _check_stochastic(model, x, declared, leak)
    randomised = declared or observed
    decision.remember(model, randomised)  # the evaluations below neither probe nor warn again
    eot = (DEFAULT_EOT if randomised else 1) if eot is None else eot
    score_draws = decision.score_draws_for(randomised, score_draws)
    evidence["stochastic"]["eot"] = eot
    evidence["stochastic"]["score_draws"] = score_draws
    if randomised:
        evidence["stochastic"]["reason"] += (f"; gradient attacks used EOT with {eot} draws, verdicts the majority "
                                             f"of {score_draws} draws")
    evidence["zero_gradients"] = _check_zero_gradients(model, x, y, batch_size)

    # white-box and black-box attacks at eps: one evaluation, per-sample results
    white = _build_whitebox(model, attacks, eps, eot)
    black = _build_blackbox(model, blackbox, source, eps, n_queries, white)
    # cascade=False: every attack on every image, so each attack's own robust accuracy can be compared
    common = dict(batch_size=batch_size, seed=seed, progress=progress, eot=eot, cascade=False,
                  score_draws=score_draws)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="the model is stochastic")  # eot chosen here, on observation
        result = evaluate(model, x, y, attacks=[*white, *black], eps=eps, **common)
    names = list(result.robust_acc)
    attack_objs = dict(zip(names, [*white, *black], strict=True))
    kinds = {name: _attack_kind(a) for name, a in attack_objs.items()}
    per = {k: torch.tensor(v, dtype=torch.bool) for k, v in (result.per_sample or {}).items()}
    clean = per["clean"]
    robust = {name: clean & per[name] for name in names}
    counts = {name: int(flag.sum()) for name, flag in robust.items()}
    survivors = clean.clone()
    for name in names:
        if kinds[name] != "blackbox":
            survivors &= robust[name]

    evidence["single_step_beats_iterative"] = _single_step_check(counts, kinds, n)
    bb = _blackbox_check(counts, kinds, n)
    if not bb.get("skipped"):
        bb["images_only_blackbox_fools"] = int((survivors & ~_all(robust, names, kinds, "blackbox")).sum())
    evidence["blackbox_beats_whitebox"] = bb

    evidence["eps_increase_no_effect"] = _check_eps_increase(model, x, y, eps, white, counts, common, n)
    evidence["unbounded_not_successful"] = _check_unbounded(model, x, y, clean.to(device), eot, unbounded_steps,
                                                            batch_size, score_draws)
    evidence["random_beats_gradient"] = _check_random(model, x, y, eps, survivors.to(device), n_random, score_draws,
                                                      batch_size, n)
    evidence["gradient_dependent"] = _check_gradient_modes(model, x, y, eps, modes, common, n)

    evidence = {k: evidence[k] for k in CHECKS}
    return AuditReport(
        flags={k for k, ev in evidence.items() if ev["raised"]},
        evidence=evidence,
        checks=[k for k, ev in evidence.items() if not ev.get("skipped")],
        model=result.model,
        dataset=result.dataset,
        eps=eps,
        n_examples=n,
        seed=int(seed),
        eot=eot,
        score_draws=score_draws,
        clean_acc=result.clean_acc,
        attacks=result.attacks,
        time_s=time.perf_counter() - started,
        **provenance(device),
        command=command,
    )

def _all(robust: dict[str, torch.Tensor], names: list[str], kinds: dict[str, str], kind: str) -> torch.Tensor:
    """Per-sample: robust to every attack of ``kind``."""
    out = torch.ones_like(next(iter(robust.values())))
    for name in names:
        if kinds[name] == kind:
            out &= robust[name]
    return out
