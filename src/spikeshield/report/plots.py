"""Plots for people who would rather look than read: training curves and accuracy against the attack budget."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_history(history: Sequence[dict[str, Any]], path: str | os.PathLike, title: str | None = None) -> Path:
    """Plot training loss and train/test accuracy per epoch (a ``metrics.jsonl`` history) to a PNG at ``path``."""
    epochs = [m["epoch"] for m in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    ax_loss.plot(epochs, [m["train_loss"] for m in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss")
    ax_acc.plot(epochs, [100 * m["train_acc"] for m in history], marker="o", label="train")
    ax_acc.plot(epochs, [100 * m["test_acc"] for m in history], marker="o", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)")
    ax_acc.legend()
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sweep(
    sweep: Any,
    path: str | os.PathLike,
    title: str | None = None,
    reference: Mapping[str, Sequence[tuple[float, float]]] | None = None,
) -> Path:
    """Plot accuracy (%) against the budget eps (in units of 1/255) of an eps sweep to a PNG at ``path``.

    Args:
        sweep: a :class:`~spikeshield.evaluation.SweepResult` (or any object with ``eps`` in pixel units and
            ``robust_acc = {attack: [accuracy per eps]}`` as fractions; ``worst_case_acc`` is drawn too when
            there are several attacks).
        path: the PNG to write (its folder is created).
        title: figure title; None: the sweep's model and dataset when known.
        reference: curves to draw dashed beside ours, e.g. a paper's table:
            ``{"HoSNN (paper) PGD": [(0, 0.92), (4, 0.61), (8, 0.38)]}`` with eta in units of 1/255 and accuracy
            as a fraction.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    eta = [round(float(e) * 255, 9) for e in sweep.eps]
    curves = dict(sweep.robust_acc)
    if not curves:
        raise ValueError("the sweep has no attack curves to plot")
    fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    markers = "osD^vP*X"
    for i, (name, acc) in enumerate(curves.items()):
        if len(acc) != len(eta):
            raise ValueError(f"attack {name!r} has {len(acc)} accuracies for {len(eta)} budgets")
        ax.plot(eta, [100 * a for a in acc], marker=markers[i % len(markers)], label=name)
    worst = getattr(sweep, "worst_case_acc", None)
    if worst is not None and len(curves) > 1:
        ax.plot(eta, [100 * a for a in worst], color="black", linestyle=":", marker=".",
                label="worst case (per sample)")
    for name, points in (reference or {}).items():
        pts = sorted((float(e), float(a)) for e, a in points)
        if not pts or any(not 0.0 <= a <= 1.0 for _, a in pts):
            raise ValueError(f"reference curve {name!r} needs (eta in 1/255, accuracy as a fraction in [0, 1]) "
                             f"points; divide percentages by 100")
        ax.plot([e for e, _ in pts], [100 * a for _, a in pts], linestyle="--", marker="x", alpha=0.8, label=name)
    ax.set(xlabel="eps (x/255)", ylabel="accuracy (%)", ylim=(-2, 102))
    ax.set_xticks(eta)
    ax.set_xticklabels([f"{e:g}" for e in eta])
    ax.grid(alpha=0.3)
    ax.legend()
    if title is None:
        model = getattr(sweep, "model", None) or {}
        parts = [str(model.get("name", "")), str(getattr(sweep, "dataset", "") or "")]
        title = " on ".join(p for p in parts if p) or None
        n = getattr(sweep, "n_examples", None)
        if title and n:
            title += f" ({n} images)"
    if title:
        ax.set_title(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
