"""The report of benchmarks/purification_reproduce.py: the MLF ablation, training costs, the attack table (end to end,
BPDA, per-stage gradients, the strong cascade, restarts, transfer) beside the paper's CIFAR-10 numbers, the PGD-steps
and eps curves (paper Fig. 5), paired tests and audits (reproduction.md, summary.json, curves.png)."""

from __future__ import annotations

import json
from pathlib import Path

from hosnn_reproduce import load_pieces, mcnemar, with_interval
from purification_reproduce import EPS, MOVED, RUNS, SOURCES, STEPS
from randhet_report import pct
from rsc_report import audit_lines

LABELS = {"senet18": "SENet-18 MLF (classifier alone)", "senet18_ols": "SENet-18 MLF + OLS",
          "senet18_at": "SENet-18 MLF + FGSM AT", "purifier": "purifier + SENet-18",
          "purifier_ols": "purifier + SENet-18 OLS (both)", MOVED: "purifier moved to DS-ResNet-14 (K = 3)",
          "resnet14_k1": "DS-ResNet-14, K = 1", "resnet14_k2": "DS-ResNet-14, K = 2",
          "resnet14_k3": "DS-ResNet-14, K = 3", "wrn16_8": "WRN-16-8 LIF (source)",
          "resnet20": "ResNet-20 LIF (source)"}
MAIN = ("senet18", "senet18_ols", "senet18_at", "purifier", "purifier_ols", MOVED)
PAPER_ATTACKS = ("gaussian", "fgsm", "i-fgsm7", "mi-fgsm7", "pgd7", "cw", "apgd-ce")
#: METHODS 3 / 6: the paper's Table 1 (MNIST, DS-ResNet-14, eps 0.2), K -> (FGSM, PGD)
PAPER_ABLATION = {3: (79.11, 45.86), 2: (72.57, 37.51), 1: (71.67, 27.45)}
#: the paper's CIFAR-10 row for purification + MLF SENet-18
PAPER_CIFAR = {"clean": 89.05, "fgsm": 75.63, "pgd7": 74.16, "autoattack": 71.48, "bpda": 69.48}


def robust(record: dict | None, attack: str) -> float | None:
    return None if record is None else record["robust_acc"].get(attack)


def worst(record: dict | None) -> float | None:
    return None if record is None else record["worst_case_acc"]


def training_lines(work: Path) -> tuple[list[str], dict]:
    """Clean test accuracy and training time of every run (from its metrics.jsonl)."""
    lines = ["| Run | clean test acc (n test images) | epochs | training time (s) |", "|---|---:|---:|---:|"]
    times = {}
    for run in RUNS:
        path = work / run / "metrics.jsonl"
        if not path.is_file():
            continue
        history = [json.loads(line) for line in path.read_text().splitlines()]
        times[run] = sum(m["epoch_time_s"] for m in history)
        lines.append(f"| {LABELS.get(run, run)} | {pct(history[-1]['test_acc'])} ({history[-1]['test_n']}) | "
                     f"{len(history)} | "
                     f"{times[run]:.0f} |")
    lines += ["", "These wall-clock times were taken with up to five processes sharing the 2 cores, so they do not "
                  "compare runs; the cost comparison is benchmarks/purification_cost.py's, below."]
    return lines, times


def cost_lines(out: Path) -> list[str]:
    """Purification's training cost against adversarial training, from cost.json (step times in one process)."""
    path = out / "cost.json"
    if not path.is_file():
        return ["- (benchmarks/purification_cost.py has not run)"]
    cost = json.loads(path.read_text())
    step, run = cost["step_s"], cost["run_s"]
    return [f"`{cost['command']}`: median step time over {cost['rounds']} interleaved rounds, batch {cost['batch']}, "
            f"{cost['threads']} thread, times the runs' steps (the configs' images, batch and epochs).", "",
            "| training | step (s) | steps | run (s) |", "|---|---:|---:|---:|",
            *(f"| {label} | {step[k]:.2f} | {cost['steps_per_run'][k]} | {run[k]:.0f} |" for k, label in
              (("clean", "classifier, clean"), ("at", "classifier, FGSM AT"), ("pgd_at", "classifier, PGD7 AT"),
               ("purifier", "purifier (FGSM 16/255 on the frozen classifier)"))), "",
            f"Training the purifier costs {100 * cost['purifier_vs_at']:.0f}% less than FGSM AT of the classifier and "
            f"{100 * cost['purifier_vs_pgd_at']:.0f}% less than PGD7 AT (the paper: 93.9% less than AT); counting the "
            f"classifier's own training as well, purification costs {100 * -cost['purifier_and_classifier_vs_at']:.0f}%"
            f" more than FGSM AT. Per step the purifier costs {cost['per_step_purifier_vs_at']:.2f}x an FGSM-AT step: "
            "it crafts the same FGSM example, on the classifier, and runs its own spiking U-Net."]


def ablation_lines(found: dict) -> list[str]:
    lines = ["| K | n | clean | FGSM 0.2 | PGD 0.2 | FGSM 8/255 | PGD 8/255 | paper FGSM / PGD (MNIST, 0.2) |",
             "|---:|---:|---|---|---|---|---|---|"]
    for k in (1, 2, 3):
        record = found.get(f"resnet14_k{k}", {}).get("ablation")
        if record is None:
            continue
        big, small = record["0.2000"], record[f"{EPS:.4f}"]
        n = big["n_examples"]
        pgd = next(name for name in big["robust_acc"] if name.startswith("pgd"))
        lines.append(f"| {k} | {n} | {with_interval(big['clean_acc'], n)} | "
                     f"{with_interval(big['robust_acc']['fgsm'], n)} | {with_interval(big['robust_acc'][pgd], n)} | "
                     f"{pct(robust(small, 'fgsm'))} | {pct(robust(small, pgd))} | "
                     f"{PAPER_ABLATION[k][0]} / {PAPER_ABLATION[k][1]} |")
    return lines


def attack_lines(found: dict) -> list[str]:
    head = ["Model", "n", "Clean", "Gaussian", "FGSM", "I-FGSM7", "MI-FGSM7", "PGD7", "CW", "APGD-CE",
            "worst (paper's)", "BPDA-PGD20", "worst BPDA", "per-stage PGD20 (n)", "strong cascade (n)",
            "PGD50 x 5 (n)", "transfer worst"]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---|" * (len(head) - 2)]
    for run in MAIN:
        pieces = found.get(run, {})
        paper = pieces.get("paper")
        if paper is None:
            continue
        n = paper["n_examples"]

        def small(piece: str, pieces: dict = pieces) -> str:
            record = pieces.get(piece)
            return "-" if record is None else f"{pct(worst(record))} ({record['n_examples']})"

        cells = [LABELS[run], str(n), with_interval(paper["clean_acc"], n),
                 *(pct(robust(paper, a)) for a in PAPER_ATTACKS), with_interval(paper["worst_case_acc"], n),
                 pct(robust(pieces.get("bpda"), "bpda-pgd20")), pct(worst(pieces.get("bpda"))), small("stages"),
                 small("strong"), small("restarts"), pct(worst(pieces.get("transfer")))]
        lines.append("| " + " | ".join(cells) + " |")
    cifar = PAPER_CIFAR
    lines.append(f"| paper, CIFAR-10 (purification + MLF SENet-18) | 10,000 | {cifar['clean']} | - | {cifar['fgsm']} |"
                 f" - | - | {cifar['pgd7']} | - | - | - | BPDA20+EOT {cifar['bpda']} | - | - | AutoAttack "
                 f"{cifar['autoattack']} | - | - |")
    return lines


def everything(pieces: dict) -> tuple[float | None, int]:
    """The per-image worst case over every piece run on the first n images (n = the smallest piece's), with n."""
    records = [r for p, r in pieces.items() if p in ("paper", "bpda", "stages", "strong", "restarts", "steps",
                                                      "transfer") and "per_sample" in r]
    if not records:
        return None, 0
    n = min(r["n_examples"] for r in records)
    robust_all = [all(all(flags[i] for flags in r["per_sample"].values()) for r in records) for i in range(n)]
    return sum(robust_all) / n, n


def verdict_lines(found: dict) -> list[str]:
    lines = []
    for run in MAIN:
        pieces = found.get(run, {})
        value, n = everything(pieces)
        if value is not None:
            paper = pieces.get("paper", {})
            lines.append(f"- {LABELS[run]}: {pct(value)}% of the first {n} images survive every attack above "
                         f"(the paper's attacks alone: {pct(worst(paper) if paper else None)}% of "
                         f"{paper.get('n_examples', '-')}).")
    return lines or ["- (no evaluation has run)"]


def transfer_lines(found: dict) -> list[str]:
    names = [f"{s}:{a}" for s in SOURCES for a in ("fgsm", "pgd5", "pgd10", "pgd20")]
    lines = ["| Model | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for run in MAIN:
        record = found.get(run, {}).get("transfer")
        if record is not None:
            lines.append(f"| {LABELS[run]} | " + " | ".join(pct(robust(record, n)) for n in names) + " |")
    return lines


def stage_lines(found: dict) -> list[str]:
    lines = []
    for run in MAIN:
        record = found.get(run, {}).get("stages")
        if record is not None:
            cells = ", ".join(f"{name.split('@')[1]} {pct(value)}" for name, value in record["robust_acc"].items())
            lines.append(f"- {LABELS[run]} ({record['n_examples']} images): {cells}")
    return lines or ["- (not run)"]


def pair_lines(found: dict) -> list[str]:
    lines = []
    for a, b, piece in (("purifier", "senet18", "paper"), ("purifier_ols", "purifier", "paper"),
                        ("senet18_ols", "senet18", "paper"), ("purifier", "senet18_at", "paper"),
                        ("purifier", "senet18", "strong")):
        ra, rb = found.get(a, {}).get(piece), found.get(b, {}).get(piece)
        if ra is None or rb is None or ra["n_examples"] != rb["n_examples"]:
            continue
        column = "worst_case" if "worst_case" in ra["per_sample"] else next(iter(ra["per_sample"]))
        p = mcnemar(ra["per_sample"][column], rb["per_sample"][column])
        lines.append(f"- {piece} worst case, {LABELS[a]} {pct(worst(ra))} vs {LABELS[b]} {pct(worst(rb))}: "
                     f"McNemar p = {p:.3g} (n = {ra['n_examples']})")
    return lines or ["- (not enough pieces)"]


def plots(found: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not any("steps" in found.get(run, {}) or "sweep" in found.get(run, {}) for run in MAIN):
        return  # no curve has run yet
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for run in MAIN:
        pieces = found.get(run, {})
        if "steps" in pieces:
            left.plot(STEPS, [100 * robust(pieces["steps"], f"pgd{k}") for k in STEPS], marker="o", label=LABELS[run])
        if "sweep" in pieces:
            sweep = pieces["sweep"]
            right.plot([round(e * 255) for e in sweep["eps"]], [100 * v for v in sweep["robust_acc"]["pgd7"]],
                       marker="o", label=LABELS[run])
    left.set(xlabel="PGD steps (2/255 each), eps 8/255", ylabel="robust accuracy (%)", ylim=(-2, 102),
             title="PGD steps (paper Fig. 5a), end to end")
    right.set(xlabel="eps (/255), PGD7", ylabel="robust accuracy (%)", ylim=(-2, 102),
              title="budget (paper Fig. 5b), end to end")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    right.legend(fontsize=7)
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)


def summary(found: dict, times: dict) -> dict:
    runs = {}
    for run, pieces in found.items():
        row: dict = {}
        for piece, record in pieces.items():
            if piece == "ablation":
                row[piece] = {eps: {"clean": r["clean_acc"], **r["robust_acc"]} for eps, r in record.items()
                              if isinstance(r, dict)}
            elif piece == "audit":
                row[piece] = record["flags"]
            elif piece == "sweep":
                row[piece] = {"eps": record["eps"], "worst_case": record["worst_case_acc"],
                              "pgd7": record["robust_acc"]["pgd7"]}
            elif "robust_acc" in record:
                row[piece] = {"n": record["n_examples"], "clean": record["clean_acc"],
                              "worst_case": record["worst_case_acc"], **record["robust_acc"]}
        value, n = everything(pieces)
        if value is not None:
            row["every_attack"] = {"robust": value, "n": n}
        if run in times:
            row["training_time_s"] = times[run]
        runs[run] = row
    return {"eps": EPS, "runs": runs, "paper_cifar10": PAPER_CIFAR, "paper_table1_mnist": PAPER_ABLATION}


def write_report(out: Path, args, command: str) -> None:
    """reproduction.md, summary.json and curves.png from the pieces under ``out``."""
    found = load_pieces(out, (*RUNS, MOVED))
    train_table, times = training_lines(Path(args.work))
    out.mkdir(parents=True, exist_ok=True)
    plots(found, out)
    lines = [
        "# Image purification + MLF on FashionMNIST: ours beside the paper's (eps 8/255)", "",
        f"Report: `{command}`; the evaluation commands are in each JSON (`command`).", "",
        "Networks (configs/purification/): SENet-18 (pre-activation SE blocks) with channels x 0.25 and MLF neurons "
        "(K = 3, T = 4), one epoch of Adam on 16,000 training images; the spiking purifier (CBDNet layout, LIF, no BN) "
        "with channels x 0.25 and T = 4, two epochs on 8,000 images (Charbonnier, then L_rec + asymmetric + TV) of "
        "FGSM 16/255 examples of the frozen classifier. The paper: full SENet-18, 150 epochs of SGD, the purifier "
        "200 epochs, CIFAR-10.", "",
        "## Training", "", *train_table, "",
        "## Cost against adversarial training", "", *cost_lines(out), "",
        "## The MLF ablation (paper Table 1)", "",
        "DS-ResNet-14 with channels x 0.25, T = 4, one epoch; PGD is 7 steps of 2.5 eps / 7 from a random start. The "
        "paper's numbers are for MNIST.", "", *ablation_lines(found), "",
        "## Attacks", "",
        "Robust accuracy (%) on the first n test images at 8/255 (95% Wilson intervals where shown). Gradient attacks "
        "differentiate end to end, through the spiking purifier's surrogate gradients; 'BPDA' replaces the "
        "purifier's backward by the identity (it is deterministic, so EOT adds nothing); 'per-stage' is the worst "
        "case of PGD20 with each stage's backward set apart (purifier through RGA, PDSG, HART, a triangle "
        "surrogate or its ANN twin; classifier the same with the purifier by BPDA); 'strong' is snn-adaptive-quick "
        "then AutoAttack (standard) as one cascade; 'transfer' is the worst case over FGSM and PGD5/10/20 crafted on "
        "two independently trained SNNs.", "", *attack_lines(found), "",
        "## Does purification survive an attacker who differentiates through it?", "",
        "Per image, robust only if it survives every attack run on it (paper attacks, BPDA, per-stage, strong "
        "cascade, restarts, PGD steps, transfer), on the images all of them share:", "", *verdict_lines(found), "",
        "## Paired tests (same images)", "", *pair_lines(found), "",
        "## Per-stage gradients", "", *stage_lines(found), "",
        "## Transfer", "", *transfer_lines(found), "",
        "## Audits", "", *audit_lines(found, MAIN, LABELS), "",
        *(["![PGD steps and eps curves](curves.png)", ""] if (out / "curves.png").exists() else
          ["(The PGD-steps and eps curves have not run yet.)", ""]),
    ]
    (out / "reproduction.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(summary(found, times), indent=1) + "\n")
