"""The leaderboard: one RobustBench-like JSON per model, a markdown table and a self-contained HTML page with plots
(issue 22).

A row's ``robust_acc`` is the worst case over the whole protocol's cascade (clean, AutoAttack, ``snn-adaptive``); the
transfer and sweep numbers sit beside it, never in it. Numbers are stored as numbers (percent, two decimals), the
paper's claim beside ours with its dataset (a CIFAR-10 claim is shown, not compared), the audit's and the
evaluation's flags listed, and user-submitted rows marked.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from spikeshield.benchmark.browser import LOADED_MARK
from spikeshield.benchmark.budget import PLAN_RECORD, suite_name
from spikeshield.benchmark.entries import Entry
from spikeshield.benchmark.protocol import EPS, PROTOCOL
from spikeshield.evaluation.result import THREAT_MODELS
from spikeshield.fileio import atomic_write_text

#: version of a row's JSON layout
ENTRY_SCHEMA = "spikeshield.leaderboard-entry/1"


def _pct(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 2)


def row(entry: Entry, cells: dict[str, dict[str, Any]], dataset: str, preset: str, command: str) -> dict[str, Any]:
    """The JSON record of one model from its protocol cells."""
    robust = cells["robust"]
    audit = cells.get("audit", {})
    sweep = cells.get("sweep")
    transfer = cells.get("transfer")
    certified = cells.get("certify")
    cost = _costs(robust, cells.get("tune"))
    claim = entry.claim
    record: dict[str, Any] = {
        "schema": ENTRY_SCHEMA,
        "model": entry.name,
        "defence": entry.defence,
        "dataset": dataset,
        "user_submitted": entry.user,
        "baseline": entry.baseline,
        "config": entry.config,
        "threat_model": {"norm": "Linf", "eps": EPS, "clamped": robust.get("threat_model") == THREAT_MODELS[True]},
        "clean_acc": _pct(robust["clean_acc"]),
        "robust_acc": _pct(robust["worst_case_acc"]),
        "attacks": {name: _pct(acc) for name, acc in robust["robust_acc"].items()},
        "broken_by": robust.get("broken_by", {}),
        "transfer_acc": _pct(transfer["worst_case_acc"]) if transfer else None,
        "sweep": {"eps": sweep["eps"], "robust_acc": [_pct(a) for a in sweep["worst_case_acc"]]} if sweep else None,
        "certified": ({"norm": certified["norm"], "abstain_rate": _pct(certified["abstain_rate"]),
                       "curve": [[r, _pct(a)] for r, a in certified["curve"]]} if certified else None),
        "flags": sorted(set(robust.get("flags", [])) | set(audit.get("flags", []))),
        "budget": {"plan": robust["budget"]["plan"], "record": PLAN_RECORD} if robust.get("budget") else None,
        "cost_in_apgd_ce": cost["cascade"],
        "tune_cost_in_apgd_ce": cost["tune"],
        "time_in_apgd_ce": cost["time"],
        "stochastic": bool(robust.get("stochastic")),
        "score_draws": robust.get("score_draws"),
        "n_examples": robust["n_examples"],
        "claimed": ({"metric": claim.metric, "value": claim.value, "clean": claim.clean, "dataset": claim.dataset,
                     "source": claim.source, "comparable": claim.dataset == dataset} if claim else None),
        "protocol": PROTOCOL,
        "preset": preset,
        "seconds": {name: round(cell.get("seconds", 0.0), 2) for name, cell in cells.items()},
        "command": command,
        "spikeshield_version": robust.get("spikeshield_version"),
        "date": robust.get("date"),
    }
    return record


def _apgd_ce_run(robust: dict[str, Any]) -> tuple[float, float] | None:
    """Forward passes and seconds of one own-surrogate APGD-CE run over the clean-correct images, scaled from the
    cascade's APGD-CE member (fixed steps, no early stop: its cost per image it attacked); None without an APGD-CE
    member that attacked an image."""
    passes, per_sample = robust.get("number_forward_passes", {}), robust.get("per_sample", {})
    names = list(robust["robust_acc"])
    if "apgd-ce" not in names or not passes.get("apgd-ce") or "clean" not in per_sample:
        return None
    at = names.index("apgd-ce")
    attacked = sum(per_sample[names[at - 1]] if at else per_sample["clean"])
    if not attacked:
        return None
    scale = sum(per_sample["clean"]) / attacked
    return passes["apgd-ce"] * scale, robust.get("time_s", {}).get("apgd-ce", 0.0) * scale


def _costs(robust: dict[str, Any], tune: dict[str, Any] | None) -> dict[str, float | None]:
    """The protocol's cost in own-surrogate APGD-CE runs (:func:`_apgd_ce_run`): ``cascade`` (the robust cascade's
    forward passes), ``tune`` (the one-off tuning's forward passes) and ``time`` (both cells' seconds over the run's:
    the unrolled gradients cost more per pass than the fused surrogate); None where there is no APGD-CE reference
    (or no tune cell)."""
    run = _apgd_ce_run(robust)
    if run is None:
        return {"cascade": None, "tune": None, "time": None}
    passes, seconds = run
    tune = tune or {}
    whole = robust.get("seconds", 0.0) + tune.get("seconds", 0.0)
    return {"cascade": round(robust["number_forward_passes"]["total"] / passes, 2),
            "tune": round(tune["forward_passes"] / passes, 2) if "forward_passes" in tune else None,
            "time": round(whole / seconds, 2) if seconds and whole else None}


def write_board(rows: list[dict[str, Any]], out: str | Path, title: str, command: str) -> dict[str, Path]:
    """Write ``models/NAME.json``, ``leaderboard.json``, ``leaderboard.md`` and ``leaderboard.html`` (with its
    plots also as PNG files) under ``out``; returns their paths."""
    out = Path(out)
    (out / "models").mkdir(parents=True, exist_ok=True)
    ranked = sorted(rows, key=lambda r: (-(r["robust_acc"] or 0), -(r["clean_acc"] or 0), r["model"]))
    for r in ranked:
        atomic_write_text(out / "models" / f"{r['model']}.json", json.dumps(r, indent=2) + "\n")
    paths = {"json": out / "leaderboard.json", "md": out / "leaderboard.md", "html": out / "leaderboard.html"}
    atomic_write_text(paths["json"], json.dumps({"title": title, "command": command, "protocol": PROTOCOL,
                                                 "models": ranked}, indent=2) + "\n")
    atomic_write_text(paths["md"], markdown(ranked, title, command))
    figures = plots(ranked)
    for name, png in figures.items():
        (out / f"{name}.png").write_bytes(png)
    atomic_write_text(paths["html"], page(ranked, title, command, figures))
    return paths


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _claim(r: dict[str, Any]) -> str:
    c = r["claimed"]
    if not c:
        return "-"
    where = "" if c["comparable"] else f" ({c['dataset']})"
    return f"{c['metric']} {c['value']:.2f}{where}"


def _cost_cell(r: dict[str, Any]) -> str:
    if r.get("cost_in_apgd_ce") is None:
        return "-"
    tune, time = r.get("tune_cost_in_apgd_ce"), r.get("time_in_apgd_ce")
    return (f"{r['cost_in_apgd_ce']:.1f}x" + (f" + {tune:.1f}x tune" if tune is not None else "")
            + (f" ({time:.1f}x time)" if time is not None else ""))


def markdown(rows: list[dict[str, Any]], title: str, command: str) -> str:
    """The leaderboard as a markdown table, best robust accuracy first."""
    lines = [f"# {title}", "", f"`{command}`", "",
             "Robust accuracy (%) at L-inf eps = 8/255 under one protocol (clean, then one cascade: AutoAttack and "
             "the snn-adaptive ensemble, or with a budget preset the recorded budget plan's members; EOT and "
             "majority-vote verdicts for random models); cost is the cascade's forward passes in own-surrogate "
             "APGD-CE runs, plus the one-off tuning's (in brackets: the whole protocol's seconds in that run's); "
             "transfer is PGD20 crafted on the plain baseline; flags are the audit's. User-submitted rows are "
             "marked *.", "",
             "| # | model | defence | clean | robust | transfer | claimed (paper) | flags | cost | n |",
             "|---:|---|---|---:|---:|---:|---|---|---:|---:|"]
    for rank, r in enumerate(rows, 1):
        mark = " *" if r["user_submitted"] else ""
        lines.append(f"| {rank} | [{r['model']}](models/{r['model']}.json){mark} | {r['defence']} | "
                     f"{_cell(r['clean_acc'])} | {_cell(r['robust_acc'])} | {_cell(r['transfer_acc'])} | "
                     f"{_claim(r)} | {', '.join(r['flags']) or '-'} | {_cost_cell(r)} | {r['n_examples']} |")
    return "\n".join(lines) + "\n"


def plots(rows: list[dict[str, Any]]) -> dict[str, bytes]:
    """PNG bytes of the board's four plots: robust vs clean, accuracy vs eps, per-attack cascade, claimed vs ours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def png(fig) -> bytes:
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=110)
        plt.close(fig)
        return buffer.getvalue()

    figures: dict[str, bytes] = {}
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in rows:
        ax.scatter(r["clean_acc"], r["robust_acc"], marker="*" if r["user_submitted"] else "o", s=60)
        ax.annotate(r["model"], (r["clean_acc"], r["robust_acc"]), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    ax.set(xlabel="clean accuracy (%)", ylabel="robust accuracy (%), 8/255", title="Robust against clean accuracy")
    ax.grid(alpha=0.3)
    figures["robust_vs_clean"] = png(fig)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in rows:
        if r["sweep"]:
            ax.plot([255 * e for e in r["sweep"]["eps"]], r["sweep"]["robust_acc"], marker="o", label=r["model"])
    ax.set(xlabel="eps (/255)", ylabel="robust accuracy (%), APGD-CE", title="Accuracy against eps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    figures["accuracy_vs_eps"] = png(fig)

    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * max(len(rows), 1)))
    colours: dict[str, Any] = {}  # one colour per attack on every row (a tuned gradient's value aside)
    for i, r in enumerate(rows):
        left = 0.0
        for name, count in r["broken_by"].items():
            share = 100 * count / max(r["n_examples"], 1)
            if share:
                attack = suite_name(name)
                colour = colours.setdefault(attack, plt.get_cmap("tab20")(len(colours) % 20))
                ax.barh(i, share, left=left, color=colour, label=attack)
                left += share
        ax.barh(i, r["robust_acc"], left=left, color="lightgrey")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=6, loc="lower right")
    ax.set_yticks(range(len(rows)), [r["model"] for r in rows], fontsize=8)
    ax.set(xlabel="% of images: broken first by each attack (grey: robust)", title="What breaks each model")
    figures["per_attack"] = png(fig)

    claimed = [r for r in rows if r["claimed"]]
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * max(len(claimed), 1)))
    for i, r in enumerate(claimed):
        ax.barh(i + 0.2, r["claimed"]["value"], height=0.4, color="tab:orange",
                label="paper's claim" if i == 0 else None, hatch="" if r["claimed"]["comparable"] else "//")
        ax.barh(i - 0.2, r["robust_acc"], height=0.4, color="tab:blue", label="measured here" if i == 0 else None)
    ax.set_yticks(range(len(claimed)), [f"{r['model']} ({r['claimed']['dataset']})" for r in claimed], fontsize=8)
    ax.set(xlabel="accuracy (%); hatched: the claim is on another dataset", title="Claimed against measured")
    ax.legend(fontsize=7)
    figures["claimed_vs_measured"] = png(fig)
    return figures


def page(rows: list[dict[str, Any]], title: str, command: str, figures: dict[str, bytes]) -> str:
    """A self-contained HTML page: the table (links to each row's JSON) and the plots inlined as PNG data."""
    esc = html.escape
    body = []
    for rank, r in enumerate(rows, 1):
        mark = ' <span class="user" title="user-submitted">*</span>' if r["user_submitted"] else ""
        flags = "".join(f'<span class="flag">{esc(f)}</span>' for f in r["flags"]) or "-"
        body.append(f'<tr><td>{rank}</td><td><a href="models/{esc(r["model"])}.json">{esc(r["model"])}</a>{mark}'
                    f'</td><td>{esc(r["defence"])}</td><td class="num">{_cell(r["clean_acc"])}</td>'
                    f'<td class="num robust">{_cell(r["robust_acc"])}</td><td class="num">'
                    f'{_cell(r["transfer_acc"])}</td><td>{esc(_claim(r))}</td><td>{flags}</td>'
                    f'<td class="num">{_cost_cell(r)}</td><td class="num">{r["n_examples"]}</td></tr>')
    images = "".join(f'<figure><img alt="{esc(name)}" src="data:image/png;base64,'
                     f'{base64.b64encode(data).decode()}"><figcaption>{esc(name.replace("_", " "))}</figcaption>'
                     f'</figure>' for name, data in figures.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #ccc; padding: 4px 8px; }}
th {{ background: #f0f0f0; }} td.num {{ text-align: right; }} td.robust {{ font-weight: bold; }}
.flag {{ background: #fde2e2; border-radius: 3px; padding: 0 4px; margin-right: 3px; font-size: 0.85em; }}
.user {{ color: #b35900; font-weight: bold; }} figure {{ display: inline-block; margin: 1em; }}
img {{ max-width: 640px; }} code {{ background: #f6f6f6; }}
</style></head>
<body>
<h1>{esc(title)}</h1>
<p>Reproduce: <code>{esc(command)}</code>. Protocol <code>{PROTOCOL}</code>: robust accuracy (%) at L-inf
eps = 8/255, clean then one cascade - AutoAttack (rand for random models) and the snn-adaptive ensemble, or with a
budget preset the recorded budget plan's members - with EOT and majority-vote verdicts for random models; cost is the
cascade's forward passes in own-surrogate APGD-CE runs, plus the one-off tuning's (in brackets: the whole
protocol's seconds in that run's); transfer is PGD20 crafted on the plain baseline; flags come
from the gradient-obfuscation audit. A claim on another dataset is shown in brackets, not compared.
User-submitted rows are marked <span class="user">*</span>.</p>
<table id="leaderboard">
<thead><tr><th>#</th><th>model</th><th>defence</th><th>clean</th><th>robust</th><th>transfer</th>
<th>claimed (paper)</th><th>flags</th><th>cost</th><th>n</th></tr></thead>
<tbody>
{chr(10).join(body)}
</tbody></table>
<p><a href="leaderboard.json">leaderboard.json</a> &middot; <a href="leaderboard.md">leaderboard.md</a></p>
<div id="plots">{images}</div>
<script>
window.addEventListener("load", () => {{
  const decoded = [...document.images].filter((img) => img.complete && img.naturalWidth > 0).length;
  document.body.setAttribute("{LOADED_MARK}", String(decoded));
}});
</script>
</body></html>
"""
