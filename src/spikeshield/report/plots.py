"""Plots for people who would rather look than read: training curves."""

from __future__ import annotations

import os
from collections.abc import Sequence
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
