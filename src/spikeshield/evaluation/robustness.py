"""Robust accuracy with per-sample worst-case accounting (the auto-attack evaluation discipline).

Two ways to run a list of attacks. By default every attack runs on every sample, so each attack's own robust
accuracy is reported (the papers' per-attack columns) and MRA is their minimum. With ``cascade=True`` (AutoAttack's
way, and the default for an :class:`~spikeshield.attacks.AutoAttack` suite) each attack runs only on the points still
robust after the ones before it, which costs little more than the strongest member. Either way a sample counts
towards the worst case only if it is classified correctly clean and under every attack; for a random model that
verdict is the decision rule's (:mod:`spikeshield.decision`: majority over fresh draws on the sample's strongest
adversarial point), not a minimum over noisy single-draw verdicts.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from spikeshield import decision
from spikeshield.attacks.base import Attack, check_labels
from spikeshield.attacks.bpda import ANNGradientModel
from spikeshield.attacks.ensemble import Suite
from spikeshield.attacks.registry import SUITES, make_attack, make_suite, parse_attack_list, suite_version
from spikeshield.distributed import Context
from spikeshield.evaluation.flags import flags_from_result
from spikeshield.evaluation.metrics import qte_at_8
from spikeshield.evaluation.result import THREAT_MODELS, EvalResult, provenance
from spikeshield.evaluation.resume import EvalState, batch_seed, rank_file, run_fingerprint, weights_hash
from spikeshield.validation import check_eps, unclamped_pixels

#: EOT draws per gradient used on stochastic models when ``evaluate(..., eot=None)``
DEFAULT_EOT = decision.DEFAULT_EOT

#: the column of the per-sample worst case in the per-sample records
WORST = "worst_case"


def evaluate(
    model: nn.Module,
    x_or_batches: torch.Tensor | Iterable[tuple[torch.Tensor, torch.Tensor]],
    y: torch.Tensor | None = None,
    attacks: str | Attack | Sequence[str | Attack] = ("fgsm", "pgd7"),
    eps: float = 8 / 255,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = True,
    *,
    eot: int | None = None,
    grad: Any = None,
    clamp: bool = True,
    n_examples: int | None = None,
    cascade: bool | None = None,
    state_file: str | os.PathLike | None = None,
    command: str | None = None,
    score_draws: int | None = None,
    context: Context | None = None,
) -> EvalResult:
    """Clean accuracy, robust accuracy per attack, per-sample worst case and MRA of ``model``.

    Every verdict follows one decision rule (:mod:`spikeshield.decision`, docs/evaluation.md): a point is scored
    over ``score_draws`` draws and judged by majority vote; the per-sample worst case is judged on each sample's
    strongest adversarial point (lowest EOT-averaged margin) with fresh draws, not as a minimum over noisy verdicts.
    For a deterministic model this is plain ``argmax == y`` and "correct under every attack".

    Args:
        model: classifier on ``[B, C, H, W]`` images in [0, 1] (a spikeshield model). Its mode is left as it is;
            a model in train mode gets a warning.
        x_or_batches: images ``[N, C, H, W]`` (then ``y`` ``[N]`` is required) or an iterable of ``(x, y)`` batches
            (e.g. a DataLoader). Batches are re-cut to ``batch_size``, so both forms give the same result.
        y: labels for tensor input.
        attacks: registry names (a list or a comma string such as ``"fgsm,pgd7"``; ``"autoattack"``,
            ``"autoattack-standard"`` and ``"autoattack-rand"`` name the AutoAttack suites, ``"snn-adaptive"`` and
            ``"snn-adaptive-quick"`` the per-sample worst case over SNN gradients) or :class:`Attack` instances,
            used as given (their eps must equal ``eps``). A suite (:class:`~spikeshield.attacks.AutoAttack`,
            :class:`~spikeshield.attacks.SNNAdaptive`) contributes its members, each reported under its own name
            (an attack identical to an earlier one runs once); its own settings go to ``result.suites``.
        eps: L-inf budget in pixel units.
        batch_size: images per attack call.
        seed: before each batch the global torch RNG is seeded from ``(seed, batch index)``
            (:func:`~spikeshield.evaluation.resume.batch_seed`), so random starts and stochastic models are
            reproducible and a batch's outcome does not depend on the batches before it (a resumed or sharded run
            equals an uninterrupted single process); this changes the caller's global RNG state.
        progress: show a tqdm progress bar (on stderr).
        eot: EOT draws for the registry attacks; None: 1 for a deterministic model, :data:`DEFAULT_EOT` for a
            stochastic one (``model.is_stochastic``; a model that declares nothing is probed with two calls on the
            first images, with a warning if they differ). A stochastic model attacked with ``eot=1`` gets a warning.
        grad: backward pass for the registry attacks (see :class:`Attack`); None keeps the model's own.
        clamp: threat model of the registry attacks: True (standard) keeps ``x_adv`` in [0, 1]; False is the
            non-standard unclamped one of some published SNN code (METHODS 1). The result records it
            (``threat_model``) and reports label it.
        n_examples: stop after this many examples (None: all).
        cascade: run each attack only on the points still robust after the attacks before it. ``robust_acc[a]``
            is then the accuracy left after ``a`` and every attack before it, and the cost is about that of the
            strongest attack. None (default): True if an AutoAttack suite is among ``attacks``, else False (each
            attack on every point, so each column is that attack's own robust accuracy).
        state_file: a JSON file updated after every batch; if it exists (from an interrupted call of the same
            evaluation) the finished batches are skipped and the result equals an uninterrupted run.
        command: the command line that ran the evaluation, recorded in the result and the report.
        score_draws: draws behind each verdict; None: :data:`~spikeshield.decision.DEFAULT_SCORE_DRAWS` (10) for
            a stochastic model, 1 otherwise.
        context: under torchrun, this process's :class:`~spikeshield.distributed.Context`
            (:func:`spikeshield.distributed.start`): batch ``i`` is attacked by rank ``i % world_size``, every rank
            returns the merged result, equal to one process's but for the times, and ``state_file`` becomes one
            file per rank (``NAME.rank{r}-of-{w}.json``). Every rank must pass the same data and settings.

    Returns:
        :class:`EvalResult` (accuracies as fractions in [0, 1]). Its ``flags`` are the obfuscation flags the
        evaluation shows on its own (:func:`~spikeshield.evaluation.audit.flags_from_result`: a single-step attack
        beating an iterative one, a black-box beating the white-box ones, a stochastic model);
        :func:`~spikeshield.evaluation.audit` runs the whole checklist.

    >>> result = evaluate(model, x, y, attacks="fgsm,pgd7", eps=8/255)   # doctest: +SKIP
    >>> result.save_json("run/eval.json")                                # doctest: +SKIP
    >>> evaluate(model, x, y, attacks="autoattack", state_file="run/aa-state.json")   # doctest: +SKIP
    """
    eps = check_eps(eps)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    if n_examples is not None and (not isinstance(n_examples, int) or n_examples < 1):
        raise ValueError(f"n_examples must be a positive integer or None; got {n_examples!r}")
    device = _device_of(model)
    batches = _rebatch(x_or_batches, y, batch_size, n_examples)
    first = next(batches, None)
    if first is None:
        raise ValueError("no examples to evaluate: the data is empty")
    with contextlib.nullcontext() if clamp else unclamped_pixels():
        stochastic = decision.is_stochastic(model, first[0].to(device))  # probed if the model declares nothing
    draws = decision.score_draws_for(stochastic, score_draws)
    named, suites = _build_attacks(model, attacks, eps, eot=eot, grad=grad, clamp=clamp, stochastic=stochastic,
                                   score_draws=score_draws)
    cascade = bool(suites) if cascade is None else bool(cascade)
    _warn_about(model, named, stochastic)

    ctx = context or Context()
    classes = getattr(getattr(model, "info", None), "num_classes", None) or getattr(model, "num_classes", None)
    fingerprint = run_fingerprint(model=getattr(model, "config", None) or type(model).__name__,
                                  weights=weights_hash(model), eps=eps, seed=seed, score_draws=draws,
                                  attacks={n: a.settings() for n, a in named.items()}, batch_size=batch_size,
                                  n_examples=n_examples, cascade=cascade, data=_data_fingerprint(x_or_batches, y),
                                  shard=[ctx.rank, ctx.world_size])
    state_file = rank_file(state_file, ctx)
    state = EvalState.load_or_new(state_file, fingerprint)
    if not state.flags:
        columns = ["clean", *named, WORST]
        state.flags = {name: [] for name in columns}
        state.adversarial = {name: [] for name in named}
        state.fractions = {name: [] for name in columns}
        state.passes = {name: 0 for name in ["clean", *named, WORST]}
        state.seconds = {name: 0.0 for name in named}
    started = time.perf_counter() - sum(state.seconds.values())
    bar = _progress_bar(progress and ctx.is_main, x_or_batches, y, n_examples, batch_size, ctx)
    try:
        for index, (xb, yb) in enumerate(itertools.chain([first], batches)):
            if not ctx.owns(index):
                continue
            if index >= state.batches_done:
                torch.manual_seed(batch_seed(seed, index))
                _attack_batch(model, named, xb.to(device), yb, eps, classes, cascade, state, draws, stochastic)
                state.sizes.append(xb.shape[0])
                state.batches_done = index + 1
                if state_file is not None:
                    state.save(state_file)
            bar.update(xb.shape[0])
            clean = state.flags["clean"]
            bar.set_postfix(clean_acc=f"{sum(clean) / max(len(clean), 1):.3f}")
    finally:
        bar.close()
    total_s = time.perf_counter() - started
    if ctx.distributed:
        shares = ctx.all_gather((state, total_s))
        state, total_s = _merge([share for share, _ in shares], ctx.world_size), max(t for _, t in shares)
    result = _summarise(model, named, eps, seed, state, total_s, device, command, cascade, draws, stochastic)
    result.suites = suites
    result.flags = sorted(flags_from_result(result, model))
    return result


def _attack_batch(model, named: dict[str, Attack], xb: torch.Tensor, yb: torch.Tensor, eps: float, classes,
                  cascade: bool, state: EvalState, draws: int, stochastic: bool) -> None:
    """Run the clean pass and every attack on one batch under the decision rule (:mod:`spikeshield.decision`);
    append the per-sample verdicts, fractions of correct draws and costs to ``state``.

    Every verdict is the majority over ``draws`` draws. A column judges, per sample, the stronger of the clean image
    and the attack's point (in a cascade: the strongest point so far) and the worst case the strongest point of all
    (:class:`~spikeshield.decision.StrongestPoint`). On a stochastic model those verdicts use fresh draws, never the
    draws that chose the point, and a point leaves a cascade only when two verdicts agree it is broken. On a
    deterministic model this is exactly "correct clean and under the attack(s)"."""
    yb = check_labels(yb.to(xb.device), xb.shape[0], classes)
    everyone = torch.arange(xb.shape[0], device=xb.device)
    clean_scores = decision.score(model, xb, draws)
    clean = clean_scores.wins(yb)
    state.passes["clean"] += xb.shape[0] * draws
    _record(state, "clean", clean, clean_scores.fraction(yb))
    strongest = decision.StrongestPoint(xb)
    strongest.offer(everyone, xb, clean, clean_scores.margin(yb))
    robust = clean.clone()  # the points a cascade still attacks
    if cascade and stochastic and not clean.all():  # a point is skipped only if fresh draws agree it is wrong clean
        wrong = (~clean).nonzero().squeeze(1)
        robust[wrong] = decision.score(model, xb[wrong], draws).wins(yb[wrong])
        state.passes["clean"] += wrong.numel() * draws
    correct, fraction = clean.clone(), clean_scores.fraction(yb)
    for name, attack in named.items():
        todo = robust.nonzero().squeeze(1) if cascade else everyone
        if not cascade:
            correct, fraction = torch.zeros_like(clean), torch.zeros_like(fraction)
        adversarial = torch.zeros_like(clean)
        if todo.numel():
            t0, before = time.perf_counter(), attack.forward_passes
            x_sub, y_sub = xb[todo], yb[todo]
            x_adv = attack(x_sub, y_sub)
            _check_adversarial(x_adv, x_sub, eps, name, attack.clamp)
            with attack.threat_model():
                scores = decision.score(model, x_adv, draws)
                verdict, margin = scores.wins(y_sub), scores.margin(y_sub)
                strongest.offer(todo, x_adv, verdict, margin)
                if cascade:
                    point, chosen = strongest.x[todo], strongest.correct[todo]
                else:
                    pair = decision.StrongestPoint(x_sub)
                    pair.offer(everyone[:todo.numel()], x_sub, clean[todo], clean_scores.margin(yb)[todo])
                    pair.offer(everyone[:todo.numel()], x_adv, verdict, margin)
                    point, chosen = pair.x, pair.correct
                images = x_adv.shape[0] * draws
                if stochastic:  # the column's verdict on fresh draws
                    fresh = decision.score(model, point, draws)
                    ok, share = fresh.wins(y_sub), fresh.fraction(y_sub)
                    images += point.shape[0] * draws
                else:
                    ok, share = chosen, chosen.double()
            correct[todo], fraction[todo], adversarial[todo] = ok, share, verdict
            if cascade:
                robust[todo] = ok | chosen
            state.seconds[name] += time.perf_counter() - t0
            state.passes[name] += attack.forward_passes - before + images
        _record(state, name, correct, fraction)
        state.adversarial[name] += adversarial.cpu().tolist()
    final, share = strongest.correct, strongest.correct.double()
    if not named:
        final, share = clean, clean_scores.fraction(yb)
    elif stochastic:  # the worst case: fresh draws on each sample's strongest point (left a cascade or not)
        with contextlib.nullcontext() if all(a.clamp for a in named.values()) else unclamped_pixels():
            fresh = decision.score(model, strongest.x, draws)
        final, share = fresh.wins(yb), fresh.fraction(yb)
        state.passes[WORST] += xb.shape[0] * draws
    _record(state, WORST, final, share)


def _merge(states: list[EvalState], world_size: int) -> EvalState:
    """One state from every rank's (``states[r]`` holds batches ``r, r + world_size, ...``), in batch order."""
    merged = EvalState(states[0].fingerprint)
    merged.flags = {name: [] for name in states[0].flags}
    merged.fractions = {name: [] for name in states[0].fractions}
    merged.adversarial = {name: [] for name in states[0].adversarial}
    merged.passes = {name: sum(s.passes[name] for s in states) for name in states[0].passes}
    merged.seconds = {name: sum(s.seconds[name] for s in states) for name in states[0].seconds}
    starts = [0] * world_size  # where each rank's next batch begins in its lists
    for index in range(sum(len(s.sizes) for s in states)):
        rank, k = index % world_size, index // world_size
        state, size = states[rank], states[rank].sizes[k]
        cut = slice(starts[rank], starts[rank] + size)
        for target, source in ((merged.flags, state.flags), (merged.fractions, state.fractions),
                               (merged.adversarial, state.adversarial)):
            for name, values in source.items():
                target[name] += values[cut]
        merged.sizes.append(size)
        starts[rank] += size
    merged.batches_done = len(merged.sizes)
    return merged


def _record(state: EvalState, column: str, verdicts: torch.Tensor, fractions: torch.Tensor) -> None:
    """Append one batch's verdicts and fractions of correct draws to a column of ``state``."""
    state.flags[column] += verdicts.cpu().tolist()
    state.fractions[column] += fractions.double().cpu().tolist()


# --------------------------------------------------------------------------------------------------------- helpers
def _build_attacks(model, attacks, eps: float, *, eot: int | None, grad: Any, clamp: bool, stochastic: bool,
                   score_draws: int | None = None) -> tuple[dict[str, Attack], dict[str, dict]]:
    """Registry names, suites or Attack instances -> ``({unique name: attack}, {suite name: its own settings})``.

    ``eot=None``: registry attacks get :data:`DEFAULT_EOT` draws on a stochastic model, 1 otherwise; a suite keeps
    its own default (AutoAttack "rand": 20). Two attacks are merged (run once) only if they have the same settings
    and attack the same model."""
    if isinstance(attacks, str):
        attacks = [item for item in attacks.split(",") if item.strip()]
        if not attacks:
            raise ValueError(f"no attack given; choose registry names or suites ({', '.join(SUITES)})")
    elif isinstance(attacks, Attack):
        attacks = [attacks]
    members: list[tuple[str | None, Attack]] = []
    suites: dict[str, dict] = {}
    for item in attacks:
        if isinstance(item, str) and suite_version(item) is not None:
            item = make_suite(item, model, eps, eot=eot, grad=grad, clamp=clamp, score_draws=score_draws)
        if isinstance(item, Suite):
            suites[item.name] = {k: v for k, v in item.settings().items() if k != "members"}
            members += list(item.members.items())
            continue
        if isinstance(item, Attack):
            members.append((None, item))
            continue
        (key,) = parse_attack_list([item])
        draws = eot if eot is not None else DEFAULT_EOT if stochastic else 1
        members.append((None, make_attack(key, model, eps, eot=draws, grad=grad, clamp=clamp,
                                          score_draws=score_draws)))
    named: dict[str, Attack] = {}
    for given, attack in members:
        if abs(attack.eps - eps) > 1e-12:
            raise ValueError(f"attack {attack.name!r} has eps = {attack.eps} but the evaluation eps is {eps}: "
                             f"build it with the same eps")
        base = given or attack.name
        if base in named and named[base].settings() == attack.settings() and _same_target(named[base], attack):
            continue  # the same attack again (e.g. APGD-CE in AutoAttack and in snn-adaptive): run it once
        name, k = base, 2
        while name in named:
            name, k = f"{base}_{k}", k + 1
        named[name] = attack
    return named, suites


def _same_target(a: Attack, b: Attack) -> bool:
    """Whether two attacks query the same model objects (the attacked model, and a transfer attack's source)."""
    def targets(attack: Attack) -> tuple[int, ...]:
        model = attack.model.classifier if isinstance(attack.model, ANNGradientModel) else attack.model
        return id(model), id(getattr(attack, "source", None))
    return targets(a) == targets(b)


def _data_fingerprint(data, y) -> Any:
    """What identifies tensor data cheaply (shape, label hash, pixel sum); None for an iterable of batches."""
    if not isinstance(data, torch.Tensor) or not isinstance(y, torch.Tensor):
        return None
    labels = hashlib.sha256(y.detach().cpu().long().numpy().tobytes()).hexdigest()[:16]
    return [list(data.shape), labels, round(float(data.detach().double().sum()), 6)]


def _warn_about(model: nn.Module, named: dict[str, Attack], stochastic: bool) -> None:
    """Warnings that explain a likely mistake (auto-attack style: symptom, reason, fix)."""
    if getattr(model, "training", False):
        warnings.warn("the model is in train mode: batch norm uses batch statistics and dropout is active, so "
                      "accuracies are not those of the deployed model. Call model.eval() before evaluate() "
                      "(spikeshield models keep their surrogate gradients in eval mode).", UserWarning, stacklevel=3)
    # a transfer attack follows its source's gradient: only a random source needs EOT
    weak = [name for name, a in named.items() if a.eot == 1 and getattr(getattr(a, "source", None), "is_stochastic",
                                                                        stochastic)]
    if weak:
        warnings.warn(f"attack(s) {weak} follow the gradient of a stochastic model (model.is_stochastic, or a "
                      f"transfer attack's source) with eot=1: a single "
                      f"random draw gives a noisy gradient, which overstates robustness. Use Expectation over "
                      f"Transformation, e.g. eot=10, which averages the gradient over 10 draws.", UserWarning,
                      stacklevel=3)


def _device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU if it has none)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _rebatch(data, y, batch_size: int, limit: int | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches of ``batch_size`` from tensors or from an iterable of batches (at most ``limit``)."""
    if isinstance(data, torch.Tensor):
        if y is None:
            raise ValueError("evaluate(model, x, y): labels y are required when x is a tensor")
        if not isinstance(y, torch.Tensor) or y.shape[:1] != data.shape[:1]:
            raise ValueError(f"y must be a tensor with one label per image ({data.shape[0]}); "
                             f"got {getattr(y, 'shape', type(y).__name__)}")
        source: Iterable = [(data, y)]
    else:
        if y is not None:
            raise ValueError("y must be None when the data is an iterable of (x, y) batches")
        source = data
    sent = 0
    for xb, yb in _recut(source, batch_size):
        take = xb.shape[0] if limit is None else min(xb.shape[0], limit - sent)
        yield xb[:take], yb[:take]
        sent += take
        if limit is not None and sent >= limit:
            return


def _recut(source: Iterable, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Re-cut a stream of ``(x, y)`` batches into batches of ``batch_size`` (the last one may be smaller)."""
    pending_x: list[torch.Tensor] = []
    pending_y: list[torch.Tensor] = []
    held = 0
    for item in source:
        try:
            xb, yb = item
        except (TypeError, ValueError):
            raise ValueError("each batch must be an (x, y) pair of tensors") from None
        if not isinstance(xb, torch.Tensor) or not isinstance(yb, torch.Tensor) or yb.shape[:1] != xb.shape[:1]:
            raise ValueError("each batch must be an (x, y) pair of tensors with one label per image")
        pending_x.append(xb)
        pending_y.append(yb)
        held += xb.shape[0]
        while held >= batch_size:
            xs, ys = _cat(pending_x), _cat(pending_y)
            yield xs[:batch_size], ys[:batch_size]
            pending_x, pending_y, held = [xs[batch_size:]], [ys[batch_size:]], held - batch_size
    if held:
        yield _cat(pending_x), _cat(pending_y)


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate along the batch dimension without copying a single part."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _progress_bar(enabled: bool, data, y, limit: int | None, batch_size: int, ctx: Context):
    """A tqdm bar over this rank's examples (total known for tensors and sized datasets)."""
    from tqdm.auto import tqdm

    total = None
    if isinstance(data, torch.Tensor):
        total = data.shape[0]
    elif hasattr(getattr(data, "dataset", None), "__len__"):
        total = len(data.dataset)
    if limit is not None:
        total = min(total, limit) if total is not None else limit
    desc = "evaluate"
    if ctx.distributed:
        desc = f"evaluate (rank {ctx.rank} of {ctx.world_size})"
        if total is not None:
            total = sum(min(batch_size, total - start) for k, start in enumerate(range(0, total, batch_size))
                        if ctx.owns(k))
    return tqdm(total=total, disable=not enabled, unit="img", desc=desc, leave=False)


def _check_adversarial(x_adv: torch.Tensor, x: torch.Tensor, eps: float, name: str, clamp: bool = True) -> None:
    """Final check of an attack's output: shape, finite, inside the eps-ball and (if ``clamp``) [0, 1]."""
    if x_adv.shape != x.shape or not torch.isfinite(x_adv).all():
        raise RuntimeError(f"attack {name!r} returned a bad tensor (shape {list(x_adv.shape)}, or NaN/inf values)")
    gap = (x_adv - x).abs().max().item()
    if gap > eps + 1e-6 or (clamp and (x_adv.min() < 0 or x_adv.max() > 1)):
        raise RuntimeError(f"attack {name!r} left the eps-ball or [0, 1] (max perturbation {gap:.6g} > {eps:.6g})")


def _summarise(model, named, eps, seed, state: EvalState, total_s, device, command, cascade, draws: int,
               stochastic: bool) -> EvalResult:
    """Turn the per-sample verdicts and fractions of correct draws into the result record."""
    per = {name: torch.tensor(flags, dtype=torch.bool) for name, flags in state.flags.items()}
    clean = per["clean"]
    robust = {name: per[name] for name in named}  # each column's verdict already weighs the clean image

    def share(flag: torch.Tensor) -> float:  # exact count / n in double precision, not a float32 mean
        return int(flag.sum()) / flag.numel()

    robust_acc = {name: share(flag) for name, flag in robust.items()}
    broken_by, survivors = {}, clean.clone()
    for name, flag in robust.items():  # the first attack (in order) that fooled each clean-correct sample
        broken_by[name] = int((survivors & ~flag).sum())
        survivors &= flag
    clamps = {getattr(attack, "clamp", True) for attack in named.values()}
    config = dict(getattr(model, "config", None) or {"name": type(model).__name__})
    info = getattr(model, "info", None)
    passes = dict(state.passes)
    return EvalResult(
        model=config,
        dataset=str(config.get("dataset") or getattr(info, "name", "unknown")),
        eps=eps,
        clean_acc=share(clean),
        robust_acc=robust_acc,
        adv_acc={name: share(torch.tensor(state.adversarial[name], dtype=torch.bool)) for name in named},
        worst_case_acc=share(per[WORST]),
        mra=min(robust_acc.values()) if robust_acc else None,
        n_examples=int(clean.numel()),
        seeds=[int(seed)],
        number_forward_passes={**passes, "total": sum(passes.values())},
        attacks={name: attack.settings() for name, attack in named.items()},
        time_s={**state.seconds, "total": total_s},
        flags=[],
        **provenance(device),
        command=command,
        per_sample={name: flag.tolist() for name, flag in per.items()},
        cascade=cascade,
        broken_by=broken_by,
        threat_model=THREAT_MODELS[clamps.pop()] if len(clamps) == 1 else "mixed" if clamps else THREAT_MODELS[True],
        stochastic=stochastic,
        score_draws=draws,
        expected_acc={name: decision.expected_accuracy(values, draws) for name, values in state.fractions.items()},
        qte=qte_at_8(eps, share(clean), robust_acc),
        per_sample_fraction={name: list(values) for name, values in state.fractions.items()},
    )

