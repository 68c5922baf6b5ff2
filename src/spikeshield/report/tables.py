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
    """Header and cells (accuracies in %) shared by the markdown and the text table. An attack that ran in a
    cascade is headed ``<ATTACK> (cumulative)``: its column is the accuracy left after it and every attack before."""
    attacks = _columns(results)
    cumulative = {a for r in results if r.cascade for a in r.robust_acc}
    header = ["Model", "eps", "Clean", *[a.upper() + (" (cumulative)" if a in cumulative else "") for a in attacks],
              "Worst case", "MRA"]

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
        "counts samples that survive every attack; MRA is the minimum robust accuracy over the attacks."
        + (" The attacks ran as a cascade (each only on the points still robust after the ones before it), so each "
           "attack's column is cumulative: the accuracy left after that attack and every attack before it."
           if result.cascade else ""),
        "",
        *_decision_lines(result),
        *_qte_lines(result),
        *_skipped_lines(result),
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


def _decision_lines(result: EvalResult) -> list[str]:
    """The decision rule the verdicts used and, per column, the expected (per-draw) accuracy with its interval."""
    if not result.expected_acc:
        return []
    rule = (f"The model is stochastic: every verdict is the majority of {result.score_draws} draws (a tie counts as "
            f"wrong), and the worst case is judged on each sample's strongest adversarial point with fresh draws."
            if result.stochastic else "The model is deterministic: every verdict is one forward pass.")
    lines = ["## Decision rule and expected accuracy", "", rule, "",
             "| Column | Majority (%) | Expected per draw (%) | 95% interval (%) |", "|---|---:|---:|---|"]
    majority = {"clean": result.clean_acc, **result.robust_acc, "worst_case": result.worst_case_acc}
    for name, e in result.expected_acc.items():
        lines.append(f"| {name} | {100 * majority.get(name, float('nan')):.2f} | {100 * e['acc']:.2f} | "
                     f"{100 * e['low']:.2f}-{100 * e['high']:.2f} |")
    return [*lines, ""]


def _qte_lines(result: EvalResult) -> list[str]:
    """Each attack's QTE at 8/255 (RSC-SNN's F-QTE for FGSM, P-QTE for PGD), when the result has them."""
    if not result.qte:
        return []
    cells = ", ".join(f"{name} {value:.2f}" for name, value in result.qte.items())
    return ["## QTE (eta 0 to 8/255)", "", f"Trade-off area between clean and each attack's robust accuracy "
            f"(RSC-SNN eq. 6; F-QTE is FGSM's, P-QTE the PGD attack's): {cells}.", ""]


def _skipped_lines(result: EvalResult) -> list[str]:
    """The members each suite left out, with the reason."""
    skipped = [(suite, name, why) for suite, settings in result.suites.items()
               for name, why in (settings.get("skipped") or {}).items()]
    if not skipped:
        return []
    return ["## Suite members skipped", "", *[f"- {suite}: {name}: {why}" for suite, name, why in skipped], ""]
