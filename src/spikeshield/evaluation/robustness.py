"""Robust accuracy with per-sample worst-case accounting (the auto-attack evaluation discipline).

Every attack runs on every sample, so each attack's own robust accuracy is reported; a sample counts towards the
worst case only if it is classified correctly clean and under every attack. MRA is the minimum robust accuracy over
the attacks.
"""

from __future__ import annotations

import subprocess
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spikeshield.attacks.base import Attack, check_labels
from spikeshield.attacks.registry import make_attack, parse_attack_list
from spikeshield.evaluation.result import EvalResult
from spikeshield.validation import check_eps

#: EOT draws per gradient used on stochastic models when ``evaluate(..., eot=None)``
DEFAULT_EOT = 10


def evaluate(
    model: nn.Module,
    x_or_batches: torch.Tensor | Iterable[tuple[torch.Tensor, torch.Tensor]],
    y: torch.Tensor | None = None,
    attacks: str | Sequence[str | Attack] = ("fgsm", "pgd7"),
    eps: float = 8 / 255,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = True,
    *,
    eot: int | None = None,
    surrogate: Any = None,
    n_examples: int | None = None,
    command: str | None = None,
) -> EvalResult:
    """Clean accuracy, robust accuracy per attack, per-sample worst case and MRA of ``model``.

    Args:
        model: classifier on ``[B, C, H, W]`` images in [0, 1] (a spikeshield model). Its mode is left as it is;
            a model in train mode gets a warning.
        x_or_batches: images ``[N, C, H, W]`` (then ``y`` ``[N]`` is required) or an iterable of ``(x, y)`` batches
            (e.g. a DataLoader). Batches are re-cut to ``batch_size``, so both forms give the same result.
        y: labels for tensor input.
        attacks: registry names (a list or a comma string such as ``"fgsm,pgd7"``) or :class:`Attack` instances,
            which are used as given (their eps must equal ``eps``).
        eps: L-inf budget in pixel units.
        batch_size: images per attack call.
        seed: the global torch RNG is seeded with it once at the start (``torch.manual_seed(seed)``), so random
            starts and stochastic models are reproducible; this changes the caller's global RNG state.
        progress: show a tqdm progress bar (on stderr).
        eot: EOT draws for the registry attacks; None: 1 for a deterministic model, :data:`DEFAULT_EOT` for a
            stochastic one (``model.is_stochastic``). A stochastic model attacked with ``eot=1`` gets a warning.
        surrogate: backward pass for the registry attacks (see :class:`Attack`); None keeps the model's own.
        n_examples: stop after this many examples (None: all).
        command: the command line that ran the evaluation, recorded in the result and the report.

    Returns:
        :class:`EvalResult` (accuracies as fractions in [0, 1]).

    >>> result = evaluate(model, x, y, attacks="fgsm,pgd7", eps=8/255)   # doctest: +SKIP
    >>> result.save_json("run/eval.json")                                # doctest: +SKIP
    """
    eps = check_eps(eps)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    if n_examples is not None and (not isinstance(n_examples, int) or n_examples < 1):
        raise ValueError(f"n_examples must be a positive integer or None; got {n_examples!r}")
    stochastic = bool(getattr(model, "is_stochastic", False))
    if eot is None:
        eot = DEFAULT_EOT if stochastic else 1
    named = _build_attacks(model, attacks, eps, eot=eot, surrogate=surrogate)
    _warn_about(model, named, stochastic)

    torch.manual_seed(seed)
    device = _device_of(model)
    classes = getattr(getattr(model, "info", None), "num_classes", None) or getattr(model, "num_classes", None)
    flags: dict[str, list[torch.Tensor]] = {"clean": [], **{name: [] for name in named}}
    passes = {"clean": 0, **{name: 0 for name in named}}
    seconds = {name: 0.0 for name in named}
    n_clean, n_seen, started = 0, 0, time.perf_counter()
    bar = _progress_bar(progress, x_or_batches, y, n_examples)
    try:
        for xb, yb in _rebatch(x_or_batches, y, batch_size, n_examples):
            xb = xb.to(device)
            yb = check_labels(yb.to(device), xb.shape[0], classes)
            with torch.no_grad():
                clean = model(xb).argmax(1) == yb
            passes["clean"] += xb.shape[0]
            flags["clean"].append(clean.cpu())
            n_clean, n_seen = n_clean + int(clean.sum()), n_seen + clean.numel()
            for name, attack in named.items():
                t0, before = time.perf_counter(), attack.forward_passes
                x_adv = attack(xb, yb)
                _check_adversarial(x_adv, xb, eps, name)
                with torch.no_grad():
                    correct = model(x_adv).argmax(1) == yb
                seconds[name] += time.perf_counter() - t0
                passes[name] += attack.forward_passes - before + xb.shape[0]
                flags[name].append(correct.cpu())
            bar.update(xb.shape[0])
            bar.set_postfix(clean_acc=f"{n_clean / n_seen:.3f}")
    finally:
        bar.close()
    total_s = time.perf_counter() - started
    if not flags["clean"]:
        raise ValueError("no examples to evaluate: the data is empty")
    return _summarise(model, named, eps, seed, flags, passes, seconds, total_s, device, command)


# --------------------------------------------------------------------------------------------------------- helpers
def _build_attacks(model, attacks, eps: float, *, eot: int, surrogate: Any) -> dict[str, Attack]:
    """Registry names or Attack instances -> ``{unique name: attack}`` in the given order."""
    if isinstance(attacks, str | Attack):
        attacks = [attacks] if isinstance(attacks, Attack) else parse_attack_list(attacks)
    named: dict[str, Attack] = {}
    for item in attacks:
        if isinstance(item, Attack):
            if abs(item.eps - eps) > 1e-12:
                raise ValueError(f"attack {item.name!r} has eps = {item.eps} but the evaluation eps is {eps}: "
                                 f"build it with the same eps")
            attack = item
        else:
            (key,) = parse_attack_list([item])
            attack = make_attack(key, model, eps, eot=eot, surrogate=surrogate)
        name, k = attack.name, 2
        while name in named:
            name, k = f"{attack.name}_{k}", k + 1
        named[name] = attack
    return named


def _warn_about(model: nn.Module, named: dict[str, Attack], stochastic: bool) -> None:
    """Warnings that explain a likely mistake (auto-attack style: symptom, reason, fix)."""
    if getattr(model, "training", False):
        warnings.warn("the model is in train mode: batch norm uses batch statistics and dropout is active, so "
                      "accuracies are not those of the deployed model. Call model.eval() before evaluate() "
                      "(spikeshield models keep their surrogate gradients in eval mode).", UserWarning, stacklevel=3)
    weak = [name for name, a in named.items() if a.eot == 1]
    if stochastic and weak:
        warnings.warn(f"the model is stochastic (model.is_stochastic) but attack(s) {weak} use eot=1: a single "
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


def _progress_bar(enabled: bool, data, y, limit: int | None):
    """A tqdm bar over examples (total known for tensors and sized datasets)."""
    from tqdm.auto import tqdm

    total = None
    if isinstance(data, torch.Tensor):
        total = data.shape[0]
    elif hasattr(getattr(data, "dataset", None), "__len__"):
        total = len(data.dataset)
    if limit is not None:
        total = min(total, limit) if total is not None else limit
    return tqdm(total=total, disable=not enabled, unit="img", desc="evaluate", leave=False)


def _check_adversarial(x_adv: torch.Tensor, x: torch.Tensor, eps: float, name: str) -> None:
    """Final check of an attack's output: shape, finite, inside the eps-ball and [0, 1]."""
    if x_adv.shape != x.shape or not torch.isfinite(x_adv).all():
        raise RuntimeError(f"attack {name!r} returned a bad tensor (shape {list(x_adv.shape)}, or NaN/inf values)")
    gap = (x_adv - x).abs().max().item()
    if gap > eps + 1e-6 or x_adv.min() < 0 or x_adv.max() > 1:
        raise RuntimeError(f"attack {name!r} left the eps-ball or [0, 1] (max perturbation {gap:.6g} > {eps:.6g})")


def _summarise(model, named, eps, seed, flags, passes, seconds, total_s, device, command) -> EvalResult:
    """Turn per-sample flags into the result record."""
    import spikeshield

    per = {name: torch.cat(parts) for name, parts in flags.items()}
    clean = per["clean"]
    robust = {name: clean & per[name] for name in named}
    worst = clean.clone()
    for flag in robust.values():
        worst &= flag
    def share(flag: torch.Tensor) -> float:  # exact count / n in double precision, not a float32 mean
        return int(flag.sum()) / flag.numel()

    robust_acc = {name: share(flag) for name, flag in robust.items()}
    config = dict(getattr(model, "config", None) or {"name": type(model).__name__})
    info = getattr(model, "info", None)
    return EvalResult(
        model=config,
        dataset=str(config.get("dataset") or getattr(info, "name", "unknown")),
        eps=eps,
        clean_acc=share(clean),
        robust_acc=robust_acc,
        adv_acc={name: share(per[name]) for name in named},
        worst_case_acc=share(worst),
        mra=min(robust_acc.values()) if robust_acc else None,
        n_examples=int(clean.numel()),
        seeds=[int(seed)],
        number_forward_passes={**passes, "total": sum(passes.values())},
        attacks={name: attack.settings() for name, attack in named.items()},
        time_s={**seconds, "total": total_s},
        flags=[],
        spikeshield_version=getattr(spikeshield, "__version__", "unknown"),
        torch_version=torch.__version__,
        device=str(device),
        git_commit=git_commit(),
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        command=command,
        per_sample={name: flag.tolist() for name, flag in per.items()},
    )


def git_commit() -> str | None:
    """Best effort: the commit of the spikeshield source tree (``+dirty`` if it has changes), or None."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head or None
