"""Reports: paper-style tables (markdown, plain text), a short markdown report of an evaluation, plots
(training curves, eps sweeps, AGCS histograms, layer-wise errors)."""

from spikeshield.report.plots import plot_agcs_histogram, plot_history, plot_layer_errors, plot_sweep
from spikeshield.report.tables import format_eps, markdown_table, print_table, text_table, write_report

__all__ = ["plot_agcs_histogram", "plot_history", "plot_layer_errors", "plot_sweep", "format_eps", "markdown_table",
           "print_table", "text_table", "write_report"]
