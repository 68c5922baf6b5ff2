"""Reports: paper-style tables (markdown, plain text), a short markdown report of an evaluation, plots."""

from spikeshield.report.plots import plot_history, plot_sweep
from spikeshield.report.tables import format_eps, markdown_table, print_table, text_table, write_report

__all__ = ["plot_history", "plot_sweep", "format_eps", "markdown_table", "print_table", "text_table", "write_report"]
