"""Reports: paper-style tables (markdown, plain text), a short markdown report of an evaluation, plots
(training curves, eps sweeps, AGCS histograms, layer-wise errors, certified accuracy).

The plot functions live in :mod:`spikeshield.report.plots`, which imports matplotlib; they are loaded on first
access (``from spikeshield.report import plot_sweep`` works as before), so ``import spikeshield`` does not import
matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from spikeshield.report.tables import format_eps, markdown_table, print_table, text_table, write_report

if TYPE_CHECKING:
    from spikeshield.report.plots import (
        plot_agcs_histogram,
        plot_certified,
        plot_history,
        plot_layer_errors,
        plot_sweep,
    )

__all__ = ["plot_agcs_histogram", "plot_certified", "plot_history", "plot_layer_errors", "plot_sweep", "format_eps",
           "markdown_table", "print_table", "text_table", "write_report"]

_PLOTS = ("plot_agcs_histogram", "plot_certified", "plot_history", "plot_layer_errors", "plot_sweep")


def __getattr__(name: str) -> Any:
    """The plot functions, imported (with matplotlib) on first access."""
    if name in _PLOTS:
        value = getattr(importlib.import_module("spikeshield.report.plots"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
