"""Paper-style tables of evaluation results: markdown, plain text and a short markdown report."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from spikeshield.evaluation.result import EvalResult
from spikeshield.fileio import atomic_write_text


def _as_list(results: EvalResult | Sequence[EvalResult]) -> list[EvalResult]:
    """One result or several -> a non-empty list."""
    out = [results] if isinstance(results, EvalResult) else list(results)
    if not out or not all(isinstance(r, EvalResult) for r in out):
        raise TypeError("expected an EvalResult or a non-empty list of them")
    return out


def model_label(result: EvalResult) -> str:
    """Short model name for a table row, e.g. ``lenet lif/direct T=5``."""
    cfg = result.model
    name = str(cfg.get("name", "model"))
    if cfg.get("ann"):
        return f"{name} ANN"
    parts = [name]
    if "neuron" in cfg or "encoder" in cfg:
        parts.append(f"{cfg.get('neuron', '?')}/{cfg.get('encoder', '?')}")
    if "T" in cfg:
        parts.append(f"T={cfg['T']}")
    threat_model = getattr(result, "threat_model", "clamped")
    if threat_model != "clamped":
        parts.append(f"[{threat_model}: non-standard threat model]")
    return " ".join(parts)


def format_eps(eps: float) -> str:
    """``8/255`` when ``eps`` is a whole (or tenth) number of 1/255 steps, else the number."""
    steps = eps * 255
    for digits in (0, 1):
        if abs(steps - round(steps, digits)) < 1e-6:
            return f"{round(steps, digits):g}/255"
    return f"{eps:.4g}"


def _columns(results: list[EvalResult]) -> list[str]:
    """Attack columns in first-seen order over all results."""
    names: list[str] = []
    for r in results:
        names += [a for a in r.robust_acc if a not in names]
    return names


def _rows(results: list[EvalResult]) -> tuple[list[str], list[list[str]]]:
    """Header and cells (accuracies in %) shared by the markdown and the text table."""
    attacks = _columns(results)
    header = ["Model", "eps", "Clean", *[a.upper() for a in attacks], "Worst case", "MRA"]

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f}"

    rows = [[model_label(r), format_eps(r.eps), pct(r.clean_acc), *[pct(r.robust_acc.get(a)) for a in attacks],
             pct(r.worst_case_acc if r.robust_acc else None), pct(r.mra)] for r in results]
    return header, rows


def markdown_table(results: EvalResult | Sequence[EvalResult]) -> str:
    """Markdown table, one row per result: clean, each attack's robust accuracy, worst case and MRA, in %."""
    header, rows = _rows(_as_list(results))
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def text_table(results: EvalResult | Sequence[EvalResult]) -> str:
    """The same table as :func:`markdown_table` as aligned plain text."""
    header, rows = _rows(_as_list(results))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)]) + "\n"


def print_table(results: EvalResult | Sequence[EvalResult], file: TextIO | None = None) -> None:
    """Print :func:`text_table` (accuracies in %) to ``file`` (stdout by default)."""
    print(text_table(results), end="", file=file or sys.stdout)


def write_report(result: EvalResult, path_md: str | os.PathLike, command: str | None = None) -> Path:
    """Write a short markdown report (settings, results table, attack settings, command); return its path.

    ``command`` defaults to the one recorded in the result. The file is written atomically.
    """
    path = Path(path_md)
    path.parent.mkdir(parents=True, exist_ok=True)
    command = command or result.command
    cfg = ", ".join(f"{k}={v}" for k, v in result.model.items())
    lines = [
        f"# Robustness of {model_label(result)} on {result.dataset}",
        "",
        "## Settings",
        "",
        f"- model: {cfg}",
        f"- dataset: {result.dataset}, {result.n_examples} examples",
        f"- threat model: L-inf, eps = {format_eps(result.eps)} ({result.eps:.5g}), " + (
            "clamped to [0, 1] (standard)" if result.threat_model == "clamped" else
            f"{result.threat_model}: NOT clamped to [0, 1] (non-standard, as some published SNN code; METHODS 1)"),
        f"- seeds: {', '.join(map(str, result.seeds))}",
        f"- device: {result.device}; spikeshield {result.spikeshield_version}, torch {result.torch_version}",
        f"- commit: {result.git_commit or 'unknown'}; date: {result.date}",
        f"- total time: {result.time_s.get('total', 0.0):.1f} s, "
        f"{result.number_forward_passes.get('total', 0)} images through the model",
        "",
        "## Results (accuracy, %)",
        "",
        markdown_table(result),
        "Robust accuracy counts a sample when it is classified correctly clean and after the attack; the worst case "
        "counts samples that survive every attack; MRA is the minimum robust accuracy over the attacks.",
        "",
    ]
    if result.attacks:
        lines += ["## Attacks", "", "| Attack | Settings | Forward passes | Time (s) |", "|---|---|---:|---:|"]
        for name, settings in result.attacks.items():
            text = ", ".join(f"{k}={v}" for k, v in settings.items() if k != "eps")
            lines.append(f"| {name} | {text} | {result.number_forward_passes.get(name, 0)} | "
                         f"{result.time_s.get(name, 0.0):.2f} |")
        lines.append("")
    lines += ["## Flags", "", *([f"- {f}" for f in result.flags] or ["none raised"]), ""]
    if command:
        lines += ["## Command", "", "```", command, "```", ""]
    atomic_write_text(path, "\n".join(lines))
    return path
