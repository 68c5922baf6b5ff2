"""``spikeshield benchmark``: train (or load) every shipped defence and its plain baseline, evaluate all under one
protocol, and write the leaderboard (issue 22; docs/leaderboard.md).

>>> paths = run_benchmark(preset="quick", out="benchmarks/results/leaderboard")          # doctest: +SKIP
>>> run_benchmark(preset="quick", add_checkpoints=["runs/mine/model"])                    # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from spikeshield.benchmark.board import row, write_board
from spikeshield.benchmark.browser import check_page, chromium
from spikeshield.benchmark.entries import ENTRIES, PRESETS, Claim, Entry, Preset, select
from spikeshield.benchmark.protocol import CellCache, cells, run_protocol
from spikeshield.fileio import atomic_write_text


def _train_or_load(entry: Entry, preset: Preset, work: Path, trained: dict[str, Path], dataset: str,
                   data_dir: str | None, device: str, progress: bool) -> torch.nn.Module:
    """Train ``entry`` from its config with the preset's overrides into ``work/NAME`` (resuming a run that was cut
    short; a finished run is loaded as it is), record its checkpoint folder in ``trained`` and return its model in
    eval mode."""
    from spikeshield import checkpoint
    from spikeshield.training import train_from_file
    from spikeshield.training.trainer import METRICS_FILE

    overrides: dict[str, Any] = {k: v for k, v in preset.train.items()
                                 if k != "select.holdout" or entry.checkpoint == "selected"}
    overrides.update({"out_dir": str(work / entry.name), "model.dataset": dataset, "device": device,
                      "data.data_dir": data_dir})
    overrides.update({key: str(trained[name]) for key, name in entry.needs.items()})
    resume = (work / entry.name / METRICS_FILE).exists()
    result = train_from_file(entry.config, resume=resume, overrides=overrides, progress=progress)
    trained[entry.name] = result.out_dir / entry.checkpoint  # what the entries that need this one read
    return checkpoint.load(trained[entry.name], device=device).eval()


def _user_entries(add_checkpoints: Sequence[str], add_models: Sequence[str], add_nirs: Sequence[str],
                  device: str, options: dict[str, Any]) -> list[tuple[Entry, torch.nn.Module]]:
    """The user's models as entries (marked user-submitted), loaded on ``device``."""
    from spikeshield import checkpoint

    out: list[tuple[Entry, torch.nn.Module]] = []
    for path in add_checkpoints:
        name = f"user_{Path(path).resolve().parent.name}_{Path(path).name}"
        out.append((Entry(name, str(path), "user checkpoint", user=True), checkpoint.load(path, device=device)))
    for spec in add_models:
        from spikeshield.adapters.user import import_model

        name = "user_" + spec.replace(":", "_").replace("/", "_").replace(".py", "")
        model = import_model(spec, **options).to(device)
        out.append((Entry(name, spec, "user model", user=True), model))
    for path in add_nirs:
        from spikeshield.adapters import from_nir

        model = from_nir(path, T=options["T"], encoder=options["encoder"], dataset=options["dataset"]).to(device)
        out.append((Entry(f"user_nir_{Path(path).stem}", str(path), "user NIR graph", user=True), model))
    return [(e, m.eval()) for e, m in out]


def run_benchmark(
    dataset: str = "fashion_mnist",
    preset: str | Preset = "quick",
    models: str | None = None,
    *,
    out: str | Path = "benchmarks/results/leaderboard",
    work: str | Path = "runs/leaderboard",
    add_checkpoints: Sequence[str] = (),
    add_models: Sequence[str] = (),
    add_nirs: Sequence[str] = (),
    model_options: dict[str, Any] | None = None,
    entries: Sequence[Entry] = ENTRIES,
    data_dir: str | None = None,
    device: str = "auto",
    progress: bool = True,
    command: str | None = None,
    budget: bool | None = None,
) -> dict[str, Path]:
    """Train or load the board's models, run the protocol on each (cached cells: a killed run resumes) and write the
    leaderboard under ``out``; returns the paths of ``leaderboard.json``, ``.md`` and ``.html`` (and, where Chromium
    is installed, ``screenshot.png``: the page rendered and checked, :func:`~spikeshield.benchmark.browser.check_page`).

    Args:
        dataset: the dataset every model is trained and evaluated on.
        preset: ``"quick"`` or ``"full"`` (:data:`~spikeshield.benchmark.entries.PRESETS`), or a :class:`Preset`.
        models: comma list of entry names (their dependencies are trained too); None: every shipped entry.
        out: the leaderboard's folder (``cells/`` inside it caches every cell).
        work: where the shipped models are trained (one folder per entry, resumable).
        add_checkpoints / add_models / add_nirs: the user's models (checkpoint folders, ``module:factory`` specs,
            NIR files) evaluated under the same protocol, rows marked user-submitted.
        model_options: ``T``, ``encoder``, ``dataset``, ``framework``, ``input_range`` for ``add_models`` /
            ``add_nirs`` (spikeshield.adapters.import_model).
        entries: the shipped entries (tests pass small ones).
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: a progress bar over the cells, naming the model and cell in progress and how many are left.
        command: the command line, recorded in every row.
        budget: run the recorded budget plan (:data:`spikeshield.benchmark.budget.PLAN`) on the SNNs (True) or
            AutoAttack and ``snn-adaptive`` in full (False); None: as the preset says.
    """
    from spikeshield.data import load_dataset
    from spikeshield.distributed import device_name

    preset = PRESETS[preset] if isinstance(preset, str) else preset
    if not isinstance(preset, Preset):
        raise ValueError(f"preset must be one of {', '.join(PRESETS)} or a Preset")
    if budget is not None:
        preset = dataclasses.replace(preset, budget=budget)
    device = device_name(device)
    out, work = Path(out), Path(work) / preset.name
    command = command or f"spikeshield benchmark --dataset {dataset} --preset {preset.name}"
    chosen = select(models, tuple(entries))
    trained: dict[str, Path] = {}
    loaded: dict[str, torch.nn.Module] = {}
    for entry in chosen:
        loaded[entry.name] = _train_or_load(entry, preset, work, trained, dataset, data_dir, device, progress)
    options = {"T": 8, "encoder": "direct", "dataset": dataset, **(model_options or {})}
    users = _user_entries(add_checkpoints, add_models, add_nirs, device, options)
    board = [(e, loaded[e.name]) for e in chosen if e.row] + users

    test, train = load_dataset(dataset, "test", data_dir=data_dir), load_dataset(dataset, "train", data_dir=data_dir)
    n = max(preset.n_eval, preset.n_sweep, preset.n_transfer, preset.n_audit, preset.n_certify)
    tail = slice(len(train) - preset.n_tune, len(train))  # held-out: never the test set
    data = {"x": test.gather(slice(0, n)).float().div_(255).to(device), "y": test.labels[:n].to(device),
            "tune_x": train.gather(tail).float().div_(255).to(device), "tune_y": train.labels[tail].to(device)}
    plain = loaded.get("lif_clean")
    plan = {e.name: len(cells(m, preset, data, source=plain, command=command)) for e, m in board}
    bar = tqdm(total=sum(plan.values()), disable=not progress, desc="benchmark", unit="cell", dynamic_ncols=True)
    rows = []
    for entry, model in board:
        source = loaded.get(entry.baseline) if entry.baseline else (plain if model is not plain else None)
        cache = CellCache(out, entry.name, model, preset)

        def done(cell: str, was_cached: bool, name=entry.name) -> None:
            bar.set_description(f"{name}: {cell}{' (cached)' if was_cached else ''}")
            bar.update(1)
        bar.set_description(f"{entry.name}: running")
        results = run_protocol(model, cache, preset, data, source=source, command=command, on_cell=done)
        rows.append(row(entry, results, dataset, preset.name, command))
    bar.close()
    title = f"SNN robustness leaderboard: {dataset}, preset {preset.name}"
    paths = write_board(rows, out, title, command)
    if chromium() is not None:  # the page as a browser shows it, checked and kept beside the results
        checked = check_page(paths["html"], out / "screenshot.png", [r["model"] for r in rows])
        atomic_write_text(out / "page_check.json", json.dumps(checked, indent=2) + "\n")
        paths["screenshot"] = out / "screenshot.png"
    return paths


__all__ = ["ENTRIES", "PRESETS", "Claim", "Entry", "Preset", "run_benchmark", "select"]
