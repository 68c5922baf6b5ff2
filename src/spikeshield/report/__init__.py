"""Reports: paper-style tables (markdown, plain text) and a short markdown report of an evaluation."""

from spikeshield.report.tables import format_eps, markdown_table, print_table, text_table, write_report

__all__ = ["format_eps", "markdown_table", "print_table", "text_table", "write_report"]
