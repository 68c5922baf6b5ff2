"""The report of benchmarks/randhet_reproduce.py: tables with Wilson intervals and McNemar tests, the paper's CIFAR-10
numbers beside ours, the EOT sweep, AGCS and the sigma sweep (reproduction.md, summary.json and three PNGs)."""

from __future__ import annotations

import json
from pathlib import Path

from hosnn_reproduce import load_pieces, mcnemar, with_interval
from randhet_reproduce import ATTACKS, EOT_SWEEP, PAPER, PAPER_COLUMNS, RUNS

LABELS = {"snn_at": "SNN + AT", "het_at": "Het-SNN + AT", "randhet_at": "RandHet + AT",
          "randhet_fwd_at": "RandHet* + AT", "snn_rat": "SNN + RAT", "randhet_rat": "RandHet + RAT",
          "snn_sr": "SNN + SR", "randhet_sr": "RandHet + SR", "randhet_at_sigma0.5": "RandHet + AT, sigma 0.5",
          "randhet_at_sigma2": "RandHet + AT, sigma 2"}
PAIRS = (("randhet_at", "snn_at"), ("randhet_fwd_at", "snn_at"), ("het_at", "snn_at"), ("randhet_rat", "snn_rat"),
         ("randhet_sr", "snn_sr"))
SIGMAS = (("snn_at", 0.0), ("randhet_at_sigma0.5", 0.5), ("randhet_at", 1.0), ("randhet_at_sigma2", 2.0))


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def cell(record: dict | None, column: str) -> str:
    """A robust accuracy in %, or '-' where the piece has not run."""
    if record is None:
        return "-"
    if column == "clean":
        return pct(record["clean_acc"])
    if column == "worst_case":
        return pct(record["worst_case_acc"])
    if column == "mra":
        return pct(record["mra"])
    return pct(record["robust_acc"].get(column))


def interval(record: dict | None, column: str) -> str:
    """The verdict accuracy with its 95% Wilson interval."""
    if record is None:
        return "-"
    value = {"clean": record["clean_acc"], "worst_case": record["worst_case_acc"]}.get(column)
    value = record["robust_acc"][column] if value is None else value
    return with_interval(value, record["n_examples"])


def flags(record: dict, column: str) -> list[bool]:
    return record["per_sample"][column]


def summary(found: dict) -> dict:
    """The numbers of the report as one JSON-ready dict."""
    out = {}
    for run, pieces in found.items():
        row = {}
        if "full" in pieces:
            row.update(clean=pieces["full"]["clean_acc"], fgsm_full=pieces["full"]["robust_acc"]["fgsm"],
                       n_full=pieces["full"]["n_examples"])
        for piece in ("attacks", "no-eot", "strong"):
            if piece in pieces:
                r = pieces[piece]
                row[piece] = {"robust_acc": r["robust_acc"], "mra": r["mra"], "worst_case": r["worst_case_acc"],
                              "n": r["n_examples"], "eot": {k: v.get("eot") for k, v in r["attacks"].items()}}
        if "eot-sweep" in pieces:
            row["eot_sweep"] = {m: r["robust_acc"]["pgd10"] for m, r in pieces["eot-sweep"].items() if m != "time_s"}
        if "agcs" in pieces:
            row["agcs"] = pieces["agcs"]["agcs"]
            row["perturbation_cosine"] = pieces["agcs"]["perturbation_cosine"]
        if "audit" in pieces:
            row["audit_flags"] = [f["name"] if isinstance(f, dict) else f for f in pieces["audit"].get("flags", [])]
        out[run] = row
    return out


def main_table(found: dict) -> list[str]:
    lines = ["| model | clean (n_full) | FGSM (n_full) | FGSM | PGD10 | APGD-CE | MI-FGSM | MRA | worst case | "
             "MRA, no EOT | worst case, no EOT | strong worst case |", "|---|" + "---:|" * 11]
    for run in RUNS:
        p = found.get(run, {})
        full, att, noeot, strong = (p.get(k) for k in ("full", "attacks", "no-eot", "strong"))
        lines.append("| " + " | ".join([
            LABELS[run], cell(full, "clean"), cell(full, "fgsm"), *(cell(att, a) for a in ATTACKS), cell(att, "mra"),
            interval(att, "worst_case"), cell(noeot, "mra"), interval(noeot, "worst_case"),
            interval(strong, "worst_case")]) + " |")
    return lines


def pair_lines(found: dict) -> list[str]:
    lines = ["| pair | clean (n_full): a / b, p | worst case (EOT): a / b, p | worst case, no EOT: a / b, p | "
             "strong: a / b, p |", "|---|---|---|---|---|"]
    for a, b in PAIRS:
        pa, pb = found.get(a, {}), found.get(b, {})
        cells = []
        for piece, column in (("full", "clean"), ("attacks", "worst_case"), ("no-eot", "worst_case"),
                              ("strong", "worst_case")):
            ra, rb = pa.get(piece), pb.get(piece)
            if ra is None or rb is None:
                cells.append("-")
                continue
            fa, fb = flags(ra, column), flags(rb, column)
            n = min(len(fa), len(fb))
            fa, fb = fa[:n], fb[:n]
            cells.append(f"{100 * sum(fa) / n:.1f} / {100 * sum(fb) / n:.1f}, p = {mcnemar(fa, fb):.3f}")
        lines.append(f"| {LABELS[a]} vs {LABELS[b]} | " + " | ".join(cells) + " |")
    return lines


def paper_lines(found: dict) -> list[str]:
    lines = ["| model | paper (CIFAR-10, SEW-ResNet19, no EOT): " + ", ".join(PAPER_COLUMNS) +
             " | ours without EOT: clean, FGSM, PGD10, APGD-CE, MI-FGSM, MRA | ours with EOT: MRA |",
             "|---|---|---|---|"]
    for run, paper in PAPER.items():
        p = found.get(run, {})
        noeot, att, full = p.get("no-eot"), p.get("attacks"), p.get("full")
        ours = ", ".join([cell(full, "clean"), *(cell(noeot, a) for a in ATTACKS), cell(noeot, "mra")])
        lines.append(f"| {LABELS[run]} | {', '.join(f'{v:.2f}' for v in paper)} | {ours} | {cell(att, 'mra')} |")
    return lines


def eot_lines(found: dict) -> list[str]:
    lines = ["| model | " + " | ".join(f"m = {m}" for m in EOT_SWEEP) + " |", "|---|" + "---:|" * len(EOT_SWEEP)]
    for run in RUNS:
        sweep = found.get(run, {}).get("eot-sweep")
        if sweep:
            lines.append(f"| {LABELS[run]} | " + " | ".join(interval(sweep.get(str(m)), "pgd10") for m in EOT_SWEEP)
                         + " |")
    return lines


def sigma_lines(found: dict) -> list[str]:
    lines = ["| sigma | model | clean (n_full) | AGCS | PGD10 perturbation cosine | MRA (EOT) | worst case (EOT) | "
             "MRA, no EOT |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for run, sigma in SIGMAS:
        p = found.get(run, {})
        ag = p.get("agcs") or {}
        cosines = [f"{ag[k]:.3f}" if k in ag else "-" for k in ("agcs", "perturbation_cosine")]
        lines.append(f"| {sigma} | {LABELS[run]} | {cell(p.get('full'), 'clean')} | {' | '.join(cosines)} | "
                     f"{cell(p.get('attacks'), 'mra')} | {cell(p.get('attacks'), 'worst_case')} | "
                     f"{cell(p.get('no-eot'), 'mra')} |")
    return lines


def agcs_lines(found: dict) -> list[str]:
    lines = ["| model | AGCS (n) | PGD10 perturbation cosine (n) |", "|---|---:|---:|"]
    for run in RUNS:
        ag = found.get(run, {}).get("agcs")
        if ag:
            lines.append(f"| {LABELS[run]} | {ag['agcs']:.3f} ({ag['n_agcs']}) | {ag['perturbation_cosine']:.3f} "
                         f"({ag['n_perturbation']}) |")
    return lines


def audit_lines(found: dict) -> list[str]:
    lines = []
    for run in RUNS:
        audit = found.get(run, {}).get("audit")
        if audit:
            names = [f["name"] if isinstance(f, dict) else str(f) for f in audit.get("flags", [])]
            lines.append(f"- {LABELS[run]}: {', '.join(names) if names else 'no flag'}")
    return lines


def plots(found: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for run in RUNS:
        sweep = found.get(run, {}).get("eot-sweep")
        if sweep:
            ax.plot(EOT_SWEEP, [100 * sweep[str(m)]["robust_acc"]["pgd10"] for m in EOT_SWEEP], "o-",
                    label=LABELS[run])
    ax.set(xscale="log", xlabel="EOT draws per gradient (m)", ylabel="PGD10 robust accuracy (%)",
           title="Where does robust accuracy stop falling?")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "eot_sweep.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for run in RUNS:
        ag = found.get(run, {}).get("agcs")
        if ag and any(c == c for c in ag["agcs_cosines"]):
            ax.hist([c for c in ag["agcs_cosines"] if c == c], bins=40, range=(-0.2, 1), histtype="step",
                    label=f"{LABELS[run]} ({ag['agcs']:.2f})")
    ax.set(xlabel="cosine of the input gradients of two draws", ylabel="images", title="AGCS")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "agcs.png", dpi=120)
    plt.close(fig)

    rows = [(sigma, found.get(run, {})) for run, sigma in SIGMAS]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, get in (("clean", lambda p: p["full"]["clean_acc"]), ("MRA, EOT", lambda p: p["attacks"]["mra"]),
                       ("MRA, no EOT", lambda p: p["no-eot"]["mra"]), ("AGCS x 100", lambda p: p["agcs"]["agcs"])):
        points = []
        for sigma, p in rows:
            try:
                points.append((sigma, 100 * get(p)))
            except KeyError:
                continue
        if points:
            ax.plot(*zip(*points, strict=True), "o-", label=label)
    ax.set(xlabel="sigma (std of r)", ylabel="%", title="RandHet + AT: the sigma sweep")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "sigma.png", dpi=120)
    plt.close(fig)


def write_report(out: Path, args, command: str) -> None:
    """Write ``out``/reproduction.md, summary.json and the plots from the piece JSONs."""
    found = load_pieces(out, RUNS)
    text = "\n".join([
        "# RandHet-SNN reproduction on FashionMNIST (issue 17)", "",
        f"Written by `{command}` from the piece JSONs under this folder (each records its own command). "
        "Accuracies in %, eps 8/255, standard threat model; verdicts by the decision rule (majority of 10 draws on a "
        "random model, docs/evaluation.md); intervals are 95% Wilson on the n images; p is the exact paired McNemar "
        "test.", "",
        "## Attacks (first n test images; clean and FGSM also on n_full)", "", *main_table(found), "",
        "\"MRA\" is the paper's minimum over the attack columns; \"worst case\" is per sample over the same attacks. "
        "\"no EOT\" reruns the attacks with one draw per gradient (the paper's Table 1); \"strong\" is the cascade of "
        "snn-adaptive-quick and AutoAttack (rand on random models) with EOT.", "",
        "## RandHet against the SNN with the same training (paired, same images)", "", *pair_lines(found), "",
        "## The paper's CIFAR-10 numbers beside ours", "", *paper_lines(found), "",
        "## EOT sweep (PGD10)", "", *eot_lines(found), "", "![EOT sweep](eot_sweep.png)", "",
        "## Gradient agreement", "", *agcs_lines(found), "", "![AGCS](agcs.png)", "",
        "## The sigma sweep (RandHet + AT; sigma 0 is the SNN)", "", *sigma_lines(found), "", "![sigma](sigma.png)", "",
        "## Audit flags", "", *audit_lines(found), ""])
    (out / "reproduction.md").write_text(text)
    (out / "summary.json").write_text(json.dumps({"command": command, "runs": summary(found)}, indent=1) + "\n")
    plots(found, out)
