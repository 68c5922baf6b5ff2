"""The one training loop: clean or adversarial training from a :class:`~spikeshield.config.TrainConfig`.

``train(config)`` seeds everything from ``config.seed``, then per epoch: draws the batches (order and augmentation
fixed by ``(seed, epoch)``), reseeds the global torch RNG from ``(seed, epoch)`` (attack random starts, stochastic
encoders and neurons), optionally replaces each batch by adversarial examples, minimises the configured objective,
evaluates on the test split and writes ``metrics.jsonl``, ``train_state/`` and ``model/`` atomically. A run
stopped at any point resumes (``resume=True``) from the last finished epoch and ends with bit-identical weights
(on CPU; on GPU up to the determinism of its kernels).

Under ``torchrun`` (DESIGN 9) the same loop runs on every rank with DistributedDataParallel: each global batch of
``data.batch_size`` is split between the ranks (:func:`epoch_batches`), each rank crafts its own adversarial examples
(its own random draws), the loss is weighted so that the averaged gradient is the gradient of the whole batch's mean
loss (2 x 32 per step trains as 1 x 64), and rank 0 alone logs, plots and writes the checkpoints (of the unwrapped
model), while the others wait for it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from spikeshield import checkpoint, distributed
from spikeshield.config import TrainConfig, load_config
from spikeshield.data import ImageDataset, batches, load_dataset, make_generator, num_batches
from spikeshield.fileio import atomic_write_text
from spikeshield.training.objectives import get_objective, with_distillation
from spikeshield.training.orthogonal import orthogonal_retraction
from spikeshield.training.state import join_tensors, split_tensors

STATE_FORMAT = "spikeshield-train-state"
STATE_DIR, MODEL_DIR, METRICS_FILE, CONFIG_COPY = "train_state", "model", "metrics.jsonl", "config.yaml"
# Config keys that may differ between a run and its resumption (they do not change what is computed).
RESUMABLE_CHANGES = {"device", "out_dir", "data.data_dir", "data.download", "data.eval_batch_size"}
_TRAIN_SUBSET_STREAM, _EVAL_SUBSET_STREAM, _HOLDOUT_STREAM = 10, 11, 12
SELECTED_DIR = "selected"


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained model (eval mode), its run directory and per-epoch metrics."""

    model: nn.Module
    config: TrainConfig
    out_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    completed: bool = True

    @property
    def final(self) -> dict[str, Any]:
        """Metrics of the last finished epoch (empty if none)."""
        return self.history[-1] if self.history else {}

    @property
    def checkpoint(self) -> Path:
        """The model checkpoint directory (load it with :func:`spikeshield.checkpoint.load`): the epoch selected on
        the held-out training images when the run selects (``select.holdout``), else the last epoch's."""
        selected = self.out_dir / SELECTED_DIR
        return selected if self.config.select.holdout and selected.exists() else self.out_dir / MODEL_DIR

    @property
    def selected_epoch(self) -> int | None:
        """The epoch whose model ``checkpoint`` holds when the run selects (None otherwise)."""
        return best_holdout_epoch(self.history)


# --------------------------------------------------------------------------------------------- setup helpers
def derived_seed(seed: int, *parts: Any) -> int:
    """A 63-bit seed derived from ``seed`` and ``parts`` (stable across processes and platforms)."""
    text = ":".join(str(p) for p in ("spikeshield-train", seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & (2**63 - 1)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (all devices) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def split_holdout(dataset: ImageDataset, n: int, seed: int) -> tuple[ImageDataset, ImageDataset | None]:
    """``(training images, n held-out training images)``: a seeded random split (no holdout for ``n = 0``)."""
    if n == 0:
        return dataset, None
    if n >= len(dataset):
        raise ValueError(f"select.holdout ({n}) must leave training images: the training set has {len(dataset)}")
    order = torch.randperm(len(dataset), generator=make_generator(seed, 0, _HOLDOUT_STREAM))
    return dataset.subset(order[n:].sort().values), dataset.subset(order[:n].sort().values)


def holdout_accuracy(model: nn.Module, dataset: ImageDataset, cfg: TrainConfig, device: torch.device,
                     ctx: distributed.Context | None = None) -> float:
    """Accuracy on the held-out training images, clean or under ``select.attack``, by the decision rule (majority
    over draws for a stochastic model; the attack with its default EOT unless ``select.eot``); under torchrun each
    rank scores every ``world_size``-th batch and the counts are summed."""
    from spikeshield import decision
    from spikeshield.attacks import make_attack

    sel = cfg.select
    model.eval()
    ctx = ctx or distributed.Context()
    attack, draws, correct = None, None, 0
    for index, (x, y) in enumerate(batches(dataset, cfg.data.eval_batch_size)):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if draws is None:
            draws = decision.score_draws_for(decision.is_stochastic(model, x))
            options = {"eot": sel.eot} if sel.eot is not None else {}
            attack = make_attack(sel.attack, model, sel.eps, **options) if sel.attack else None
        if not ctx.owns(index):
            continue
        x_adv = attack(x, y) if attack is not None else x
        with torch.no_grad():
            correct += int(decision.judge(model, x_adv, y, draws)[0].sum())
    return ctx.sum(correct) / len(dataset)


def best_holdout_epoch(history: list[dict[str, Any]]) -> int | None:
    """The first epoch with the best ``holdout_acc`` in ``history`` (None if no epoch was scored)."""
    scored = [m for m in history if m.get("holdout_acc") is not None]
    return max(scored, key=lambda m: (m["holdout_acc"], -m["epoch"]))["epoch"] if scored else None


def random_subset(dataset: ImageDataset, n: int | None, seed: int, stream: int) -> ImageDataset:
    """A seeded random subset of ``n`` samples (kept in dataset order), or the dataset itself if ``n`` is None."""
    if n is None or n >= len(dataset):
        return dataset
    index = torch.randperm(len(dataset), generator=make_generator(seed, 0, stream))[:n].sort().values
    return dataset.subset(index)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Build the configured optimiser over all trainable parameters (``initial_lr`` is recorded per group).

    Parameters a module scales in its ``lr_scale`` (``{"theta_v": 0.1}`` on TA-LIF) get their own group at that
    fraction of the learning rate.
    """
    o = cfg.optim
    scaled: dict[float, list[nn.Parameter]] = {}
    for module in model.modules():
        for name, factor in getattr(module, "lr_scale", {}).items():
            scaled.setdefault(factor, []).append(getattr(module, name))
    special = {id(p) for group in scaled.values() for p in group}
    params = [{"params": [p for p in model.parameters() if p.requires_grad and id(p) not in special]},
              *({"params": group, "lr": o.lr * factor} for factor, group in scaled.items())]
    if o.name == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    elif o.name == "adamw":
        opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
    for group in opt.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return opt


def lr_factor(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Learning-rate multiplier at optimiser step ``step`` of ``total_steps``: 1, or cosine from 1 towards 0."""
    if cfg.optim.schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * step / max(total_steps, 1)))


def make_training_attack(model: nn.Module, cfg: TrainConfig):
    """The attack that crafts the training examples, or None for clean training.

    PGD without ``alpha`` uses ``2.5 * eps / steps`` (Madry et al.); RFGSM without ``alpha`` uses ``eps / 2``. On a
    stochastic model each training example comes from single draws (``eot=1``), as in the RandHet-SNN code, whose
    ordinary AT is thereby black-box AT over the random parameters; evaluation uses EOT.
    """
    from spikeshield.attacks import FGSM, PGD, RFGSM

    a = cfg.adversarial
    if a.attack == "none":
        return None
    one_draw = {"eot": 1, "score_draws": 1}  # training examples from one draw of a random model, as the papers do
    if a.attack == "fgsm":
        return FGSM(model, a.eps, start=a.start, **one_draw)
    if a.attack == "rfgsm":
        return RFGSM(model, a.eps, alpha=a.alpha, **one_draw)
    alpha = a.alpha if a.alpha is not None else 2.5 * a.eps / a.steps
    return PGD(model, a.eps, alpha=alpha, steps=a.steps, random_start=a.random_start, **one_draw)


def build_training_model(cfg: TrainConfig, device: torch.device) -> nn.Module:
    """The model a fresh run trains: the configured one, or for purifier training (``purify.classifier``) the
    pipeline of the new purifier and the frozen classifier loaded from its checkpoint (same dataset required)."""
    from spikeshield.models import Pipeline, build_model

    model = build_model(cfg.model.kwargs())
    if cfg.purify.classifier is not None:
        classifier = checkpoint.load(cfg.purify.classifier, device=device)
        if getattr(classifier.info, "name", None) != model.info.name:
            raise ValueError(f"purify.classifier {cfg.purify.classifier} classifies {classifier.info.name} images; "
                             f"the purifier is built for {model.info.name}")
        model = Pipeline([("purifier", model), ("classifier", classifier)], frozen=["classifier"])
    return model.to(device)


def _load_teacher(cfg: TrainConfig, model: nn.Module, device: torch.device) -> nn.Module:
    """The frozen ``distill.teacher`` checkpoint in eval mode; it must be built for the student's dataset."""
    teacher = checkpoint.load(cfg.distill.teacher, device=device).eval()
    mine, theirs = getattr(model, "info", None), getattr(teacher, "info", None)
    if theirs is None or mine is None or theirs.name != mine.name:
        raise ValueError(f"distill.teacher {cfg.distill.teacher} was built for {getattr(theirs, 'name', 'unknown')} "
                         f"images; the student for {getattr(mine, 'name', 'unknown')}: distill from a teacher of the "
                         f"same dataset")
    return teacher


def _prepare_hosnn(model: nn.Module, cfg: TrainConfig, train_set: ImageDataset, device: torch.device,
                   progress: bool) -> None:
    """Install the NDS of the LIF network ``cfg.hosnn.nds_from``, collected on the (unaugmented) training set, and
    with ``warm_start`` its weights (METHODS 1; the paper trains from scratch, warm start is our ablation)."""
    from spikeshield.defenses.hosnn import collect_nds, install_nds

    lif = checkpoint.load(cfg.hosnn.nds_from, device=device)
    install_nds(model, collect_nds(lif, batches(train_set, cfg.data.eval_batch_size), progress=progress))
    if cfg.hosnn.warm_start:
        result = model.load_state_dict(lif.state_dict(), strict=False)
        foreign = [k for k in result.missing_keys if not k.endswith((".theta_v", ".nds"))] + result.unexpected_keys
        if foreign:
            raise ValueError(f"hosnn.warm_start: {cfg.hosnn.nds_from} is not the same architecture ({foreign[:4]})")


@torch.no_grad()
def clean_accuracy(model: nn.Module, dataset: ImageDataset, batch_size: int, device: torch.device,
                   ctx: distributed.Context | None = None) -> float:
    """Clean accuracy of ``model`` (put in eval mode) on ``dataset``; under torchrun each rank scores every
    ``world_size``-th batch and the counts are summed."""
    ctx = ctx or distributed.Context()
    model.eval()
    correct = 0
    for index, (x, y) in enumerate(batches(dataset, batch_size)):
        if ctx.owns(index):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            correct += (model(x).argmax(1) == y).sum().item()
    return ctx.sum(correct) / max(len(dataset), 1)


# ------------------------------------------------------------------ the three swappable points (DESIGN 9)
def epoch_batches(dataset: ImageDataset, cfg: TrainConfig, epoch: int,
                  ctx: distributed.Context | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """The data sampler: this epoch's shuffled (and maybe augmented) training batches, fixed by ``(seed, epoch)``, as
    ``(x, y, size of the whole batch)``; under torchrun each rank gets its contiguous share of every batch."""
    for x, y in batches(dataset, cfg.data.batch_size, shuffle=True, augment=cfg.data.augment, seed=cfg.seed,
                        epoch=epoch):
        part = ctx.shard(len(y)) if ctx is not None and ctx.distributed else slice(None)
        yield x[part], y[part], len(y)


def log_epoch(out_dir: Path, metrics: dict[str, Any], echo: bool = True) -> None:
    """Append one epoch's metrics to ``out_dir/metrics.jsonl`` and print a one-line summary if ``echo``."""
    with open(out_dir / METRICS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(metrics) + "\n")
    if echo:
        print(
            f"epoch {metrics['epoch']}/{metrics['epochs']}  loss {metrics['train_loss']:.4f}  "
            f"train_acc {100 * metrics['train_acc']:.2f}%  test_acc {100 * metrics['test_acc']:.2f}%  "
            f"lr {metrics['lr']:.2e}  {metrics['epoch_time_s']:.1f}s  {metrics['images_per_s']:.0f} img/s",
            flush=True,
        )


def write_checkpoint(
    out_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    epoch: int,
    step: int,
    history: list[dict[str, Any]],
    objective_state: dict[str, Any] | None = None,
) -> None:
    """Write ``train_state/`` (the resume point: model, optimiser, progress, a stateful objective's state) and then
    the ``model/`` checkpoint;
    when this epoch is the best on the held-out training images so far, first ``selected/``.

    Both directories are replaced atomically, the resume point first: a run killed at any moment resumes from a
    complete epoch. No pickle: tensors go to safetensors, everything else to JSON.
    """
    config = cfg.model_dump(mode="json")
    metadata = {"epoch": epoch, "step": step, "metrics": history[-1] if history else {}, "train_config": config}
    tree, tensors = split_tensors(optimizer.state_dict(), "optimizer")
    state = {
        "format": STATE_FORMAT,
        "epoch": epoch,
        "step": step,
        "config": config,
        "history": history,
        "optimizer": tree,
        "torch_version": torch.__version__,
    }
    if objective_state is not None:
        state["objective"] = objective_state
    if best_holdout_epoch(history) == epoch:  # before the resume point: a resumed run never lacks its best epoch
        checkpoint.save(model, out_dir / SELECTED_DIR, metadata=metadata)
    with checkpoint.atomic_dir(out_dir / STATE_DIR) as tmp:
        checkpoint.save(model, tmp / MODEL_DIR, metadata=metadata)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        checkpoint.write_json(tmp / "state.json", state)
    checkpoint.save(model, out_dir / MODEL_DIR, metadata=metadata)


# ------------------------------------------------------------------------------------------- resume helpers
def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k not in ("neuron_params", "encoder_params", "model_params"):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = _flatten(old), _flatten(new)
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
        for k in sorted(set(a) | set(b))
        if k not in RESUMABLE_CHANGES and a.get(k) != b.get(k)
    ]


def _read_state(out_dir: Path) -> dict[str, Any]:
    path = out_dir / STATE_DIR / "state.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"cannot resume: {out_dir / STATE_DIR} does not exist or is incomplete (no state.json); "
            "start without --resume"
        )
    state = json.loads(path.read_text(encoding="utf-8"))
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a spikeshield training state")
    return state


def _prepare_out_dir(out_dir: Path, cfg: TrainConfig, resume: bool, overwrite: bool) -> None:
    has_run = (out_dir / STATE_DIR).exists() or (out_dir / METRICS_FILE).exists()
    if resume:
        return
    if has_run and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds a training run; resume it (spikeshield train --config FILE --resume, or "
            "train(..., resume=True)), start over with overwrite=True, or set another out_dir"
        )
    for name in (STATE_DIR, MODEL_DIR, SELECTED_DIR):
        shutil.rmtree(out_dir / name, ignore_errors=True)
    (out_dir / METRICS_FILE).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CONFIG_COPY).write_text(
        yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
    )


def _rewrite_metrics(out_dir: Path, history: list[dict[str, Any]]) -> None:
    """Make ``metrics.jsonl`` hold exactly ``history`` (drops lines of an epoch whose checkpoint never landed)."""
    atomic_write_text(out_dir / METRICS_FILE, "".join(json.dumps(m) + "\n" for m in history))


# ---------------------------------------------------------------------------------------------- the loop
class TrainStep(nn.Module):
    """One step's objective as a module: ``forward(x, y, clean) -> (loss, logits)``. Wrapped in
    DistributedDataParallel, every call the objective makes to the model (several for SR, TET's per-step outputs)
    is one DDP forward, so one backward synchronises the gradients."""

    def __init__(self, model: nn.Module, objective: Any) -> None:
        super().__init__()
        self.model = model
        self.__dict__["objective"] = objective  # not a submodule: a distillation teacher is not trained

    def forward(self, x: torch.Tensor, y: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The objective's ``(loss, logits)`` on this rank's share of the batch."""
        if getattr(self.objective, "takes_clean", False):
            return self.objective(self.model, x, y, clean=clean)
        return self.objective(self.model, x, y)


def _parallel(step: TrainStep, ctx: distributed.Context, cfg: TrainConfig) -> nn.Module:
    """``step`` wrapped in DistributedDataParallel under torchrun (with SyncBatchNorm if asked), else itself."""
    if not ctx.distributed:
        return step
    if cfg.optim.sync_batchnorm:
        if ctx.device.type != "cuda":
            raise ValueError("optim.sync_batchnorm needs CUDA (PyTorch's SyncBatchNorm has no CPU path)")
        step.model = nn.SyncBatchNorm.convert_sync_batchnorm(step.model)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(step, device_ids=[ctx.device] if ctx.device.type == "cuda" else None)


def train(
    config: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    stop_after_epochs: int | None = None,
) -> TrainResult:
    """Train the configured model; return a :class:`TrainResult` (model in eval mode, history of metrics).

    Args:
        config: the run's :class:`~spikeshield.config.TrainConfig` (``load_config`` reads one from YAML).
        resume: continue the run in ``config.out_dir`` from its last finished epoch. The config must match the
            stored one except for the keys in :data:`RESUMABLE_CHANGES`.
        progress: show a progress bar and print a line per epoch.
        overwrite: start over even if ``out_dir`` holds a run (its state, model and metrics are deleted).
        stop_after_epochs: return after this many epochs of this call (checkpoint written), e.g. to split a run
            into time slices; ``result.completed`` says whether all epochs are done.
    """
    ctx = distributed.start(config.device)
    try:
        return _run(config, ctx, resume, progress, overwrite, stop_after_epochs)
    except RuntimeError as e:
        if ctx.distributed and any(word in str(e) for word in ("Connection", "connection", "Gloo", "NCCL", "peer")):
            raise RuntimeError(
                f"rank {ctx.rank}: lost the other ranks of the run ({e}); a rank probably died. The last finished "
                f"epoch's checkpoint in {config.out_dir} is intact: restart with --resume") from e
        raise


def _run(config: TrainConfig, ctx: distributed.Context, resume: bool, progress: bool, overwrite: bool,
         stop_after_epochs: int | None) -> TrainResult:
    """:func:`train`'s body on this process (one rank of ``ctx``)."""
    cfg = config
    out_dir = Path(cfg.out_dir)
    if ctx.is_main:
        _prepare_out_dir(out_dir, cfg, resume, overwrite)
    ctx.barrier()
    progress = progress and ctx.is_main
    if resume:  # fail fast, before any data is read
        state = _read_state(out_dir)
        changes = _config_changes(state["config"], cfg.model_dump(mode="json"))
        if changes:
            raise ValueError(
                f"cannot resume {out_dir} with a different config; changed: {'; '.join(changes)}. Use the "
                "original config, or start a new run (another out_dir, or overwrite)"
            )
    seed_everything(cfg.seed)
    device = ctx.device

    train_set = load_dataset(cfg.model.dataset, "train", cfg.data.data_dir, cfg.data.download)
    test_set = load_dataset(cfg.model.dataset, "test", cfg.data.data_dir, cfg.data.download)
    train_set = random_subset(train_set, cfg.data.train_subset, cfg.seed, _TRAIN_SUBSET_STREAM)
    train_set, holdout_set = split_holdout(train_set, cfg.select.holdout, cfg.seed)
    test_set = random_subset(test_set, cfg.data.eval_subset, cfg.seed, _EVAL_SUBSET_STREAM)

    epochs = cfg.optim.epochs
    steps_per_epoch = num_batches(train_set, cfg.data.batch_size)
    total_steps = epochs * steps_per_epoch
    history: list[dict[str, Any]] = []
    start_epoch, step = 0, 0

    if resume:
        model = checkpoint.load(out_dir / STATE_DIR / MODEL_DIR, device=device)
        optimizer = make_optimizer(model, cfg)
        tensors = load_file(str(out_dir / STATE_DIR / "optimizer.safetensors"))
        optimizer.load_state_dict(join_tensors(state["optimizer"], tensors))
        start_epoch, step, history = state["epoch"], state["step"], state["history"]
        if ctx.is_main:
            _rewrite_metrics(out_dir, history)
        if start_epoch >= epochs:  # finished: make sure the exported model is the final one
            if ctx.is_main:
                checkpoint.save(model, out_dir / MODEL_DIR, metadata=checkpoint.read_config(
                    out_dir / STATE_DIR / MODEL_DIR)["metadata"])
            ctx.barrier()
            return TrainResult(model.eval(), cfg, out_dir, history, True)
        if progress:
            print(f"resuming {out_dir} after epoch {start_epoch}/{epochs}", flush=True)
    else:
        seed_everything(cfg.seed)  # the initial weights depend on the seed alone
        model = build_training_model(cfg, device)
        if cfg.hosnn.nds_from is not None:
            _prepare_hosnn(model, cfg, train_set, device, progress)
        optimizer = make_optimizer(model, cfg)

    objective = get_objective(cfg.objective, **cfg.objective_params)
    if resume and hasattr(objective, "load_state_dict"):
        objective.load_state_dict(state.get("objective", {}))
    if cfg.distill.teacher is not None:
        objective = with_distillation(objective, _load_teacher(cfg, model, device), cfg.distill.lam,
                                      cfg.distill.temperature)
    # purifier training crafts its examples against the frozen classifier alone (METHODS 3)
    attack = make_training_attack(model.classifier if cfg.purify.classifier else model, cfg)
    step_module = _parallel(TrainStep(model, objective), ctx, cfg)
    model = step_module.module.model if ctx.distributed else model  # SyncBatchNorm may have replaced modules
    ran = 0
    for epoch in range(start_epoch, epochs):
        rank_seed = ("rank", ctx.rank) if ctx.distributed else ()  # each rank its own draws (attacks, noise)
        torch.manual_seed(derived_seed(cfg.seed, "epoch", epoch, *rank_seed))
        shared = torch.Generator().manual_seed(derived_seed(cfg.seed, "shared", epoch))  # the same on every rank
        model.train()
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        lr_first = None
        bar = tqdm(epoch_batches(train_set, cfg, epoch, ctx), total=steps_per_epoch, disable=not progress,
                   desc=f"epoch {epoch + 1}/{epochs}", leave=False, dynamic_ncols=True)
        if hasattr(objective, "start_epoch"):
            objective.start_epoch(epoch)
        for x, y, whole in bar:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            clean = x
            if attack is not None:
                if cfg.adversarial.generate_in == "eval":
                    model.eval()
                x = attack(x, y)
                model.train()
            factor = lr_factor(cfg, step, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * factor
            lr_first = optimizer.param_groups[0]["lr"] if lr_first is None else lr_first
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.optim.amp == "bf16"):
                loss, logits = step_module(x, y, clean)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the training loss became {loss.item()} at epoch {epoch + 1}, step {step}: lower optim.lr "
                    "or set optim.grad_clip"
                )
            # DDP averages the ranks' gradients: weighting each rank's mean loss by its share of the batch makes the
            # average the gradient of the whole batch's mean loss, also when the shares differ (the last batch)
            (loss * (y.shape[0] * ctx.world_size / whole) if ctx.distributed else loss).backward()
            if cfg.optim.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            if cfg.optim.rat_beta:
                orthogonal_retraction(model, cfg.optim.rat_beta, shared)
            for module in model.modules():  # e.g. TA-LIF keeps theta_v >= 0
                if hasattr(module, "after_step"):
                    module.after_step()
            step += 1
            n = y.shape[0]
            loss_sum += loss.item() * n
            correct += (logits.argmax(1) == y).sum().item()
            seen += n
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{100 * correct / seen:.1f}%", refresh=False)
        bar.close()
        if hasattr(objective, "end_epoch"):
            objective.end_epoch()
        loss_sum, correct, seen = ctx.sum(loss_sum), int(ctx.sum(correct)), int(ctx.sum(seen))
        _check_ranks_agree(model, ctx, epoch)
        train_time = time.perf_counter() - t0
        t1 = time.perf_counter()
        test_acc = clean_accuracy(model, test_set, cfg.data.eval_batch_size, device, ctx)
        metrics = {
            "epoch": epoch + 1,
            "epochs": epochs,
            "step": step,
            "train_loss": loss_sum / max(seen, 1),
            "train_acc": correct / max(seen, 1),
            "test_acc": test_acc,
            "train_n": len(train_set),
            "test_n": len(test_set),
            "lr": lr_first if lr_first is not None else 0.0,
            "epoch_time_s": train_time,
            "eval_time_s": time.perf_counter() - t1,
            "images_per_s": seen / max(train_time, 1e-9),
        }
        last = cfg.select.last_epochs
        if holdout_set is not None and (last is None or epoch >= epochs - last):
            t2 = time.perf_counter()
            metrics["holdout_acc"] = holdout_accuracy(model, holdout_set, cfg, device, ctx)
            metrics["holdout_n"], metrics["holdout_time_s"] = len(holdout_set), time.perf_counter() - t2
        history.append(metrics)
        if ctx.is_main:
            write_checkpoint(out_dir, model, optimizer, cfg, epoch + 1, step, history,
                             objective.state_dict() if hasattr(objective, "state_dict") else None)
            log_epoch(out_dir, metrics)
            from spikeshield.report.plots import plot_history  # matplotlib only when a run writes its curves

            plot_history(history, out_dir / "training.png", title=cfg.name)
        ctx.barrier()  # every rank's next epoch starts after the checkpoint landed
        ran += 1
        if stop_after_epochs is not None and ran >= stop_after_epochs and epoch + 1 < epochs:
            return TrainResult(model.eval(), cfg, out_dir, history, completed=False)
    return TrainResult(model.eval(), cfg, out_dir, history, completed=True)


def _check_ranks_agree(model: nn.Module, ctx: distributed.Context, epoch: int) -> None:
    """Under torchrun, fail if the ranks' weights differ: DDP keeps them equal only while every rank makes the same
    update, so a per-rank random draw that touches the weights would silently train N different models."""
    if not ctx.distributed:
        return
    digest = hashlib.sha256()
    for tensor in model.parameters():
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    if len(set(ctx.all_gather(digest.hexdigest()))) > 1:
        raise RuntimeError(f"the ranks' weights differ after epoch {epoch + 1}: an update depended on a rank's own "
                           f"random draws (a training hook must draw from the generator shared by every rank)")


def train_from_file(
    path: str | os.PathLike,
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
    progress: bool = True,
    overwrite: bool = False,
    stop_after_epochs: int | None = None,
) -> TrainResult:
    """Read a YAML config (with dotted-key ``overrides`` such as ``{"optim.epochs": 1}``) and :func:`train` it."""
    return train(load_config(path, overrides), resume=resume, progress=progress, overwrite=overwrite,
                 stop_after_epochs=stop_after_epochs)
