"""The audit's record: flags, per-check evidence, advice, JSON and a markdown report (built by
:func:`spikeshield.evaluation.audit`)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spikeshield.evaluation.result import JsonRecord, record_fields
from spikeshield.fileio import atomic_write_text

#: version of the JSON layout written by :meth:`AuditReport.to_dict`
AUDIT_SCHEMA = "spikeshield.audit/1"

#: every check, in the order they run and are reported
CHECKS = ("stochastic", "state_leak", "zero_gradients", "single_step_beats_iterative", "blackbox_beats_whitebox",
          "eps_increase_no_effect", "unbounded_not_successful", "random_beats_gradient", "gradient_dependent")

#: what to do when a check raises its flag (the markdown report's last column; docs/flags.md has the long form)
ADVICE = {
    "stochastic": "Attack with EOT (eot >= 10, done here automatically); declare model.is_stochastic so evaluate() "
                  "does it too; report the worst case over several seeds.",
    "state_leak": "Create neuron state inside forward and drop it after (no state kept on the module between calls; "
                  "no reset_net); re-run the evaluation.",
    "zero_gradients": "The backward pass is blocked: use BPDA (with_bpda) around non-differentiable stages, another "
                      "surrogate (attacks' grad=, e.g. 'triangle' or ANN-twin gradients), or gradient-free "
                      "attacks (Square).",
    "single_step_beats_iterative": "The iterative attack is weak or its gradients mislead: more steps, a smaller "
                                   "step size, restarts, APGD; try other surrogates (grad=) and EOT.",
    "blackbox_beats_whitebox": "The white-box gradients are obfuscated: use BPDA / other surrogates / EOT, and "
                               "report the black-box attack in the worst case.",
    "eps_increase_no_effect": "The attack does not use the budget: check eps handling and clipping, step sizes "
                              "that scale with eps, more steps; suspect masked gradients.",
    "unbounded_not_successful": "With eps = 1 every image can be changed into another class: the gradient does not "
                                "lead there. Use BPDA, other surrogates, more steps, or Square.",
    "random_beats_gradient": "Gradients miss adversarial points that random search finds: masked gradients. Use "
                             "BPDA, other surrogates, EOT, Square; add the found points to the worst case.",
    "gradient_dependent": "Robustness depends on the attacker's backward pass: report the per-sample worst case over "
                          "gradient modes (the 'snn-adaptive' ensemble, or adaptive_attacks()), never one surrogate.",
}


@dataclass
class AuditReport(JsonRecord):
    """The outcome of :func:`audit`.

    ``flags`` holds the raised flags (stored in JSON as a sorted list). ``evidence[check]`` holds, for every check in
    :data:`CHECKS`, a dict with ``raised`` (bool), ``reason`` (one line) and the numbers the check looked at; a
    check that could not run has ``skipped: True`` and is missing from ``checks`` (the checks that ran, in order).
    Accuracies are fractions in [0, 1]; ``eot`` is the number of EOT draws the gradient attacks used and
    ``score_draws`` the draws behind each verdict (majority vote); ``attacks`` the settings of the attacks run at
    ``eps``.
    """

    flags: set[str]
    evidence: dict[str, dict[str, Any]]
    checks: list[str]
    model: dict[str, Any]
    dataset: str
    eps: float
    n_examples: int
    seed: int
    eot: int
    clean_acc: float
    attacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    time_s: float = 0.0
    score_draws: int = 1
    spikeshield_version: str = ""
    torch_version: str = ""
    device: str = "cpu"
    git_commit: str | None = None
    date: str = ""
    command: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with ``"schema"``; ``flags`` as a sorted list."""
        out = {"schema": AUDIT_SCHEMA, **dataclasses.asdict(self)}
        out["flags"] = sorted(self.flags)
        return json.loads(json.dumps(out, allow_nan=False))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditReport:
        """Rebuild a report from :meth:`to_dict` output (unknown keys are an error, a missing schema is not)."""
        data = record_fields(data, cls, AUDIT_SCHEMA, "audit report")
        data["flags"] = set(data.get("flags", ()))
        return cls(**data)

    def table(self) -> str:
        """Markdown table of every check: flag raised (yes / no / skipped), evidence, what to do."""
        lines = ["| Check | Flag raised | Evidence | What to do |", "|---|---|---|---|"]
        for name in CHECKS:
            ev = self.evidence.get(name, {"skipped": True, "reason": "not run"})
            if ev.get("skipped"):
                raised, todo = "skipped", ev.get("enable", "-")
            elif ev.get("raised"):
                raised, todo = "**yes**", ADVICE[name]
            else:
                raised, todo = "no", "-"
            lines.append(f"| `{name}` | {raised} | {_cell(ev.get('reason', ''))} | {_cell(todo)} |")
        return "\n".join(lines) + "\n"

    def markdown(self) -> str:
        """A short markdown report: settings, the checks table, then every check's numbers."""
        from spikeshield.report.tables import format_eps, model_label  # lazy: report imports evaluation

        label = model_label(self)  # type: ignore[arg-type]  (uses .model only)
        cfg = ", ".join(f"{k}={v}" for k, v in self.model.items())
        raised = ", ".join(f"`{f}`" for f in sorted(self.flags)) or "none"
        attacks = ", ".join(self.attacks) or "none"
        lines = [
            f"# Gradient-obfuscation audit of {label} on {self.dataset}",
            "",
            f"**Flags raised: {raised}** ({len(self.checks)} of {len(CHECKS)} checks ran; see docs/flags.md)",
            "",
            "## Settings",
            "",
            f"- model: {cfg}",
            f"- dataset: {self.dataset}, {self.n_examples} examples, clean accuracy {100 * self.clean_acc:.2f}%",
            f"- threat model: L-inf, eps = {format_eps(self.eps)} ({self.eps:.5g})",
            f"- attacks at eps: {attacks}; EOT draws per gradient: {self.eot}",
            f"- seed: {self.seed}; device: {self.device}; spikeshield {self.spikeshield_version}, "
            f"torch {self.torch_version}",
            f"- commit: {self.git_commit or 'unknown'}; date: {self.date}; time: {self.time_s:.1f} s",
            "",
            "## Checks",
            "",
            self.table(),
            "## Evidence",
            "",
        ]
        for name in CHECKS:
            ev = self.evidence.get(name, {})
            numbers = ", ".join(f"{k}={_short(v)}" for k, v in ev.items() if k not in ("raised", "reason", "enable"))
            lines.append(f"- `{name}`: {numbers or '-'}")
        lines.append("")
        if self.command:
            lines += ["## Command", "", "```", self.command, "```", ""]
        return "\n".join(lines)

    def save_markdown(self, path: str | os.PathLike) -> Path:
        """Write :meth:`markdown` atomically; return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, self.markdown())
        return path


def _cell(text: str) -> str:
    """Text safe for one markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _short(value: Any) -> str:
    """Compact rendering of an evidence value."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)


