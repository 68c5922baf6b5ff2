"""Plots for people who would rather look than read: training curves, accuracy against the attack budget,
AGCS histograms and layer-wise error distributions."""

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
    return _save(fig, path)


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
    return _save(fig, path)


def plot_agcs_histogram(
    result: Any,
    path: str | os.PathLike,
    title: str | None = None,
    bins: int = 40,
) -> Path:
    """Histogram of per-sample cosine similarities (AGCS or perturbation cosines; METHODS 2) to a PNG at ``path``.

    Args:
        result: an :class:`~spikeshield.evaluation.AGCSResult` (``cosines``, ``mean``), or
            ``{label: AGCSResult}`` to overlay several models (e.g. an SNN and RandHet-SNN).
        path: the PNG to write (its folder is created).
        title: figure title; None: "gradient cosine similarity between two draws".
        bins: number of bins over [-1, 1].

    Returns:
        ``path`` as a :class:`~pathlib.Path`. Undefined (NaN) cosines are left out; each mean is a dashed line.
    """
    results = dict(result) if isinstance(result, Mapping) else {None: result}
    if not results:
        raise ValueError("nothing to plot: no AGCS results given")
    fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    edges = [-1 + 2 * i / bins for i in range(bins + 1)]
    for i, (label, res) in enumerate(results.items()):
        cos = [c for c in _as_list(res.cosines) if c == c]          # drop NaN
        color = f"C{i % 10}"
        name = f"{label}: " if label is not None else ""
        ax.hist(cos, bins=edges, alpha=0.55 if len(results) > 1 else 0.85, color=color,
                label=f"{name}mean {res.mean:.3f} (n = {len(cos)})")
        ax.axvline(res.mean, color=color, linestyle="--", linewidth=1.5)
    ax.set(xlabel="cosine similarity", ylabel="inputs", xlim=(-1.02, 1.02))
    ax.set_title(title or "gradient cosine similarity between two draws")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_layer_errors(
    errors_by_model: Mapping[str, Mapping[str, Any]],
    path: str | os.PathLike,
    title: str | None = None,
    log: bool = True,
    ylabel: str = "relative error ||a' - a||_1 / ||a||_1",
) -> Path:
    """Box plots of layer-wise relative errors (METHODS 1), one group per layer, one colour per model, to a PNG.

    Args:
        errors_by_model: ``{model label: {layer name: 1-D errors}}`` as returned by
            :func:`~spikeshield.evaluation.layer_errors` (tensors, arrays or lists). Layers appear in order of first
            appearance; a model without a layer leaves a gap.
        path: the PNG to write (its folder is created).
        title: figure title; None: "layer-wise relative error".
        log: symmetric-log y axis (linear below 1e-3, so exact zeros stay visible), as errors span many decades.
        ylabel: y-axis label.

    Returns:
        ``path`` as a :class:`~pathlib.Path`. Boxes show the quartiles and the median, whiskers the 5th and 95th
        percentiles, a white dot the mean; outliers are not drawn.
    """
    import numpy as np

    models = {str(k): dict(v) for k, v in errors_by_model.items()}
    layers: list[str] = []
    for errs in models.values():
        layers += [name for name in errs if name not in layers]
    if not layers:
        raise ValueError("nothing to plot: no layer errors given")
    n_models = len(models)
    width = 0.8 / n_models
    lowest = 0.0
    fig, ax = plt.subplots(figsize=(max(6.4, 1.1 * len(layers) * max(1, n_models / 2) + 1.5), 4.4),
                           constrained_layout=True)
    for m, (label, errs) in enumerate(models.items()):
        data, pos = [], []
        for j, layer in enumerate(layers):
            if layer in errs:
                values = np.asarray(_as_array(errs[layer]), dtype=np.float64).ravel()
                values = values[np.isfinite(values)]
                if values.size:
                    lowest = min(lowest, float(values.min()))
                    data.append(values)
                    pos.append(j + (m - (n_models - 1) / 2) * width)
        if not data:
            continue
        color = f"C{m % 10}"
        ax.boxplot(data, positions=pos, widths=0.9 * width, whis=(5, 95), showfliers=False, showmeans=True,
                   patch_artist=True, manage_ticks=False,
                   boxprops={"facecolor": color, "alpha": 0.6}, medianprops={"color": "black"},
                   meanprops={"marker": "o", "markerfacecolor": "white", "markeredgecolor": "black",
                              "markersize": 4})
        ax.plot([], [], color=color, linewidth=8, alpha=0.6, label=label)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(layers, rotation=20 if len(layers) > 4 else 0)
    ax.set(xlabel="layer", ylabel=ylabel, xlim=(-0.6, len(layers) - 0.4))
    if log:
        ax.set_yscale("symlog", linthresh=1e-3)
    if lowest >= 0:  # errors are norms: no empty negative half
        ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    ax.set_title(title or "layer-wise relative error")
    return _save(fig, path)


def _as_list(values: Any) -> list[float]:
    """A flat list of floats from a tensor, array or sequence."""
    return [float(v) for v in _as_array(values).ravel()]


def _as_array(values: Any) -> Any:
    """A numpy array from a tensor (detached, on the CPU), array or sequence."""
    import numpy as np

    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def plot_certified(
    result: Any,
    path: str | os.PathLike,
    empirical: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    title: str | None = None,
) -> Path:
    """Certified accuracy (%) against the radius of a :class:`~spikeshield.evaluation.CertifyResult` (or
    ``{label: result}`` to overlay several models) to a PNG at ``path``.

    ``empirical`` adds points beside the curves, e.g. robust accuracy under attack at the radius of the L-inf
    ball's enclosing ball (``{"PGD (upper bound)": [(radius, accuracy)]}``, accuracy as a fraction): certified
    accuracy must stay below them. Points keyed by a label of ``result`` take that curve's colour.
    """
    results = dict(result) if isinstance(result, Mapping) else {None: result}
    if not results:
        raise ValueError("nothing to plot: no certification results given")
    fig, ax = plt.subplots(figsize=(7.2, 4.4), constrained_layout=True)
    colours, norms = {}, set()
    for i, (label, res) in enumerate(results.items()):
        points = res.curve()
        radii = [r for r, _ in points] + [max(r for r, _ in points) * 1.05 + 1e-9]
        accs = [100 * a for _, a in points] + [0.0]
        colours[label] = f"C{i % 10}"
        ax.step(radii, accs, where="post", color=colours[label],
                label=f"{label or res.coding} (n = {res.n}, alpha = {res.alpha:g})")
        norms.add(res.norm)
    for i, (name, points) in enumerate((empirical or {}).items()):
        pts = [(float(r), float(a)) for r, a in points]
        if any(not 0.0 <= a <= 1.0 for _, a in pts):
            raise ValueError(f"empirical points {name!r} need accuracies as fractions in [0, 1]")
        ax.plot([r for r, _ in pts], [100 * a for _, a in pts], linestyle="none", marker="osD^v"[i % 5],
                color=colours.get(name), label=f"{name}: attack" if name in colours else name)
    ax.set(xlabel=f"radius ({'/'.join(sorted(n.upper() for n in norms))}, pixel units)",
           ylabel="certified accuracy (%)", ylim=(-2, 102))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower left")
    ax.set_title(title or "certified accuracy of the smoothed classifier")
    return _save(fig, path)


def _save(fig: Any, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG at ``path`` (creating its folder), close it and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
