"""HoSNN reproduction on FashionMNIST (issue 9, items 5, 6 and 8): LIF and HoSNN, clean- and FGSM-trained, under both
threat models, beside the paper's numbers (METHODS 6).

Phase ``train`` trains (or keeps) the runs of configs/hosnn/ under --work: lif_clean, lif_fgsm, hosnn_clean and
hosnn_fgsm (the HoSNNs from scratch with lif_clean's NDS), plus an independently trained LIF (lif_clean, seed 1) as the
black-box source. Phase ``eval`` attacks each model of --runs at eps 8/255, one resumable piece at a time (a piece whose
JSON exists is skipped, so an interrupted run goes on where it stopped; two processes can share the runs):

- ``full-<threat>``: clean and FGSM on the first --n-full test images;
- ``suite-<threat>``: each attack on its own on the first --n: RFGSM, BIM7, PGD7/20/40, transfer PGD7 and FGSM from
  the source LIF (and for a HoSNN PGD7 through the authors' gradient ``hosnn-code``); the standard threat model adds
  APGD-CE, APGD-DLR (and APGD-CE@hosnn-code);
- ``strong-standard``: snn-adaptive (--preset or --members) then AutoAttack (APGD-CE, APGD-T, FAB-T, Square) as one
  cascade on the first --n-strong; the reported worst case is per sample over every attack of both pieces on those
  images. With --strong-from K it covers images K..K+n-strong instead, as piece ``strong-standard@K``, which the
  report joins to the pieces before it (so the cascade can grow in sessions);
- ``sweep-<threat>``: white-box FGSM and PGD7 and black-box (transfer) PGD7 at eps 0..64/255 on the first --n-sweep;
- ``psc``: layer-wise relative PSC errors between clean and black-box PGD7 images on the first --n-psc;
- ``audit``: the gradient-obfuscation checklist on the first --n-audit.

Threat models: "standard" (x_adv clamped to [0, 1]) and "paper-code", the released attack code's (no clamp, PGD alpha
eps/3 without random start, BIM alpha eps/7; METHODS 1), which is non-standard. Phase ``report`` writes the tables,
the like-for-like comparison and the plots from the JSON files.

    python benchmarks/hosnn_reproduce.py --phase train --epochs 1
    python benchmarks/hosnn_reproduce.py --phase eval          # start it twice for two cores: each takes free pieces
    python benchmarks/hosnn_reproduce.py --phase report
    python benchmarks/hosnn_reproduce.py --phase all --epochs 1 --train-subset 256 --n-full 64 --n 16 --n-strong 8 \
        --n-sweep 8 --n-psc 8 --n-audit 8 --preset quick --work /tmp/hosnn --out /tmp/hosnn-out   # smoke

Writes <out>/{<run>/<piece>.json, reproduction.md, sweeps.png, psc_errors.png, <run>/audit.md}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import sys
import time
from pathlib import Path

import torch

from spikeshield import checkpoint
from spikeshield.attacks import SNNAdaptive, Transfer, make_attack
from spikeshield.data import load_dataset
from spikeshield.distributed import device_name
from spikeshield.evaluation import audit, eps_sweep, evaluate, layer_errors
from spikeshield.training import train_from_file

EPS = 8 / 255
RUNS = ("lif_clean", "lif_fgsm", "hosnn_clean", "hosnn_fgsm", "hosnn_fgsm_warm")
THREATS = ("standard", "paper-code")
PAPER_ATTACKS = ["rfgsm", "bim7", "pgd7", "pgd20", "pgd40"]
APGD = ["apgd-ce", "apgd-dlr"]
SWEEP_ETA = (0, 2, 4, 6, 8, 16, 32, 64)
COLUMNS = ["clean", "fgsm", *PAPER_ATTACKS, *APGD, "apgd-t"]
#: METHODS 6, Tables 1-2 (SNN rows; the HoSNN rows were lost in the text): clean, FGSM, RFGSM, BIM7, PGD7, PGD20,
#: PGD40, APGD-CE, APGD-DLR, APGD-T; Table 3 (black box: clean, FGSM, RFGSM, PGD7, BIM7); Tables 8-10 (the sweeps)
PAPER = {
    "lif_clean": dict(zip(COLUMNS, [92.92, 56.01, 70.02, 38.85, 30.90, 28.73, 27.88, 23.22, 40.25, 39.67],
                          strict=True)),
    "lif_fgsm": dict(zip(COLUMNS, [92.08, 74.12, 83.12, 68.36, 62.92, 61.97, 61.43, 55.47, 68.25, 62.56],
                         strict=True)),
    "hosnn_fgsm": {"clean": 92.31, "fgsm": 84.70, "pgd7": 74.91},
}
PAPER_BLACKBOX = {"lif_fgsm": {"transfer-fgsm": 66.26, "transfer-pgd7": 74.08}}
PAPER_SWEEPS = {
    ("hosnn_fgsm", "fgsm"): [92.31, 90.26, 88.16, 86.25, 84.70, 77.70, 60.70, 24.27],
    ("hosnn_fgsm", "pgd7"): [92.31, 89.34, 85.44, 80.61, 74.91, 47.93, 5.87, 0.00],
    ("hosnn_fgsm", "transfer-pgd7"): [92.31, 91.05, 89.81, 88.85, 87.67, 84.61, 75.12, 39.93],
    ("lif_clean", "pgd7"): [92.92, 78.87, 58.03, 42.27, 30.54, 2.71, 0.0, 0.0],
}


def paper_settings_at(name: str, eps: float) -> dict:
    """The released attack code's settings for registry attack ``name`` at budget ``eps`` (METHODS 1): no clamp; PGD
    alpha eps/3 and no random start; BIM alpha eps/7."""
    base = name.split("@")[0]
    if base.startswith("pgd"):
        return {"clamp": False, "alpha": eps / 3, "random_start": False}
    if base.startswith("bim"):
        return {"clamp": False, "alpha": eps / 7}
    return {"clamp": False}


def threat_settings(name: str, threat: str, eps: float) -> dict:
    """Settings of registry attack ``name`` at ``eps`` under ``threat``: the paper code's, or none (the registry's)."""
    return paper_settings_at(name, eps) if threat == "paper-code" else {}


def sweep_pgd(threat: str, eps: float) -> dict:
    """The sweep's PGD7 settings at ``eps``: the paper code's step eps/3 under both threat models, so PGD7 reaches every
    budget (the registry's fixed 0.01 covers only 7 x 0.01 = 18/255); the standard one clamps and starts at random."""
    standard = {} if threat == "paper-code" else {"clamp": True, "random_start": True}
    return {**paper_settings_at("pgd7", eps), **standard}


def attack(name: str, model, threat: str, eps: float = EPS):
    """Registry attack ``name`` (``attack@grad`` allowed) under ``threat``."""
    return make_attack(name, model, eps, **threat_settings(name, threat, eps))


def transfer(model, source, name: str, threat: str, eps: float = EPS) -> Transfer:
    """Black-box ``name`` crafted on ``source`` under ``threat``."""
    return Transfer(model, eps, source=source, attack=name, **threat_settings(name, threat, eps))


def is_hosnn(model) -> bool:
    """Whether ``model`` has TA-LIF neurons."""
    return any(type(m).__name__ == "TALIF" for m in model.modules())


def train_or_load(run: str, args, seed: int | None = None, label: str | None = None) -> torch.nn.Module:
    """The trained run ``run`` of configs/hosnn (optionally another seed), trained now unless its checkpoint exists."""
    label = label or run
    path = Path(args.work) / label / "model"
    if not path.exists():
        if args.phase not in ("train", "all"):
            raise SystemExit(f"{path} is missing: run --phase train first")
        overrides = {"device": args.device, "out_dir": f"{args.work}/{label}", "data.data_dir": args.data_dir,
                     "optim.epochs": args.epochs, "data.batch_size": args.batch}
        if run.startswith("hosnn"):
            overrides["hosnn.nds_from"] = f"{args.work}/lif_clean/model"
        if seed is not None:
            overrides["seed"] = seed
        if args.train_subset:
            overrides.update({"data.train_subset": args.train_subset, "data.eval_subset": args.train_subset})
        train_from_file(f"configs/hosnn/{run}.yaml", overrides=overrides, overwrite=True, progress=False)
    return checkpoint.load(path, device=args.device).eval()


def pieces(model, source, data: dict, args) -> dict:
    """``{piece name: function () -> JSON-ready dict}`` for one model, in the order they run (most telling first)."""
    common = dict(eps=EPS, batch_size=args.batch_eval, seed=0, progress=False, command=data["command"])
    hosnn = is_hosnn(model)

    def evaluated(x, y, attacks, **options):
        return evaluate(model, x, y, attacks=attacks, **common, **options).to_dict(per_sample=True)

    def full(threat):
        x, y = data["x"][: args.n_full], data["y"][: args.n_full]
        return lambda: evaluated(x, y, [attack("fgsm", model, threat)])

    def suite(threat):
        names = PAPER_ATTACKS + (APGD if threat == "standard" else [])
        names += (["pgd7@hosnn-code"] + (["apgd-ce@hosnn-code"] if threat == "standard" else [])) if hosnn else []
        attacks = [attack(n, model, threat) for n in names]
        attacks += [transfer(model, source, n, threat) for n in ("pgd7", "fgsm")]
        return lambda: evaluated(data["x"][: args.n], data["y"][: args.n], attacks, cascade=False)

    def strong():
        members = args.members.split(",") if args.members else None
        adaptive = SNNAdaptive(model, EPS, preset=args.preset, members=members, tune_on=data["tune_on"])
        images = slice(args.strong_from, args.strong_from + args.n_strong)
        return evaluated(data["x"][images], data["y"][images], [adaptive, "autoattack"], cascade=True)

    def sweep(threat):
        eps_list = [e / 255 for e in SWEEP_ETA]
        factories = [lambda m, e: attack("fgsm", m, threat, e),
                     lambda m, e: make_attack("pgd7", m, e, **sweep_pgd(threat, e)),
                     lambda m, e: Transfer(m, e, source=source, attack="pgd7", **sweep_pgd(threat, e))]
        x, y = data["x"][: args.n_sweep], data["y"][: args.n_sweep]
        return lambda: eps_sweep(model, x, y, attacks=factories, eps_list=eps_list, batch_size=args.batch_eval,
                                 progress=False, command=data["command"]).to_dict()

    def psc():
        x, y = data["x"][: args.n_psc], data["y"][: args.n_psc]
        x_adv = Transfer(model, EPS, source=source, attack="pgd7")(x, y)
        errors = layer_errors(model, x, x_adv, trace="psc", batch_size=args.batch_eval)
        torch.save({k: v.half() for k, v in errors.items()}, Path(args.work) / f"psc_{data['run']}.pt")
        quantiles = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95])
        return {"n": x.shape[0], "attack": "transfer-pgd7 (standard threat model)", "quantiles": quantiles.tolist(),
                "layers": {k: {"q": torch.quantile(v.float()[:2_000_000], quantiles).tolist(),
                               "mean_clipped": v.clamp(max=10).mean().item(), "values": v.numel()}
                           for k, v in errors.items()}}

    def audited():
        x, y = data["x"][: args.n_audit], data["y"][: args.n_audit]
        report = audit(model, x, y, EPS, source=source, progress=False, batch_size=args.batch_eval,
                       command=data["command"])
        report.save_markdown(Path(args.out) / data["run"] / "audit.md")
        return report.to_dict()

    threats = args.sweep_threats.split(",")
    strong_piece = "strong-standard" + (f"@{args.strong_from}" if args.strong_from else "")
    return {"full-standard": full("standard"), "suite-standard": suite("standard"), strong_piece: strong,
            "suite-paper-code": suite("paper-code"), **{f"sweep-{t}": sweep(t) for t in threats[:1]}, "psc": psc,
            "full-paper-code": full("paper-code"), "audit": audited, **{f"sweep-{t}": sweep(t) for t in threats[1:]}}


def run_eval(args, command: str) -> None:
    """Phase eval: every missing piece of every model of ``--runs``."""
    test = load_dataset("fashion_mnist", "test", data_dir=args.data_dir)
    train = load_dataset("fashion_mnist", "train", data_dir=args.data_dir)
    tail = slice(len(train) - args.tune_examples, len(train))
    data = {"x": test.images[: args.n_full].float().div(255).to(args.device),
            "y": test.labels[: args.n_full].to(args.device), "command": command,
            "tune_on": (train.gather(tail).float().div(255).to(args.device), train.labels[tail].to(args.device))}
    source = train_or_load("lif_clean", args, seed=1, label="lif_source")
    jobs = {run: pieces(train_or_load(run, args), source, {**data, "run": run}, args) for run in args.runs.split(",")}
    for piece in next(iter(jobs.values())):  # piece by piece, so the models stay comparable if time runs out
        for run, model_jobs in jobs.items():
            path = Path(args.out) / run / f"{piece}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() or not claim(path.with_suffix(".running")):
                continue
            torch.manual_seed(0)
            started = time.perf_counter()
            path.write_text(json.dumps(model_jobs[piece](), indent=1) + "\n")
            path.with_suffix(".running").unlink()
            print(f"{run} {piece}: {time.perf_counter() - started:.0f} s", flush=True)


def claim(lock: Path) -> bool:
    """Create ``lock`` unless it exists (atomically), so processes sharing --out never run the same piece; a process
    that dies leaves its lock behind: delete ``*.running`` before resuming."""
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


def load_pieces(out: Path, runs: tuple[str, ...] = RUNS) -> dict:
    """``{run: {piece: record}}`` of every JSON under ``out/<run>/`` for ``runs``."""
    found = {}
    for run in runs:
        folder = out / run
        if folder.is_dir():
            found[run] = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
    return found


def robust_flags(records: dict, threat: str) -> dict:
    """``{column: per-sample robust flags}`` of one model under one threat model (robust: correct clean and after the
    attack), with the worst case over the suite and over suite + strong cascade (on the images they share)."""
    flags = {}
    full, suite = (records.get(f"{piece}-{threat}") for piece in ("full", "suite"))
    strong = joined(records, f"strong-{threat}")
    if full:
        flags["clean"] = full["per_sample"]["clean"]
        flags["fgsm"] = worst([full["per_sample"]], only="fgsm")
    if suite:
        flags.update({k: worst([suite["per_sample"]], only=k) for k in suite["robust_acc"]})
        flags["worst (suite)"] = worst([suite["per_sample"]])
    if strong:
        flags.update({f"{untuned(k)} (cascade)": worst([strong["per_sample"]], only=k) for k in strong["robust_acc"]})
        flags["worst case"] = worst([r["per_sample"] for r in (suite, strong) if r])
    return flags


def untuned(member: str) -> str:
    """A cascade member's name without the value it was tuned to (``apgd-ce@hart-mix-0.25`` -> ``apgd-ce@hart-mix``),
    so tuned members share a column across models (parts joined by :func:`joined` too)."""
    return "/".join(dict.fromkeys(re.sub(r"-[0-9.]+$", "", part) for part in member.split("/")))


def tuned_members(found: dict) -> list[str]:
    """One line per model: the tuned members of its strong cascade as run (their names carry the tuned value)."""
    lines = []
    for run, records in found.items():
        strong = joined(records, "strong-standard")
        tuned = [k for k in strong["robust_acc"] if k != untuned(k)] if strong else []
        if tuned:
            lines.append(f"- {run}: {', '.join(tuned)}")
    return ["Tuned cascade members (gradient-mode parameters tuned on training images, METHODS 7):", "", *lines, ""] \
        if lines else []


def joined(records: dict, piece: str) -> dict | None:
    """Piece ``piece`` (images 0..n) joined to its continuations ``piece@K`` (images K..), as far as they run on
    without a gap: ``{"robust_acc": {member: None}, "per_sample": {member: flags}}``, or None if ``piece`` is missing.
    Members are matched by position (a tuned member's name may differ between parts: the names are then joined)."""
    parts = sorted((int(k.partition("@")[2] or 0), r) for k, r in records.items() if k.partition("@")[0] == piece)
    covered, flags = 0, []
    for start, record in parts:
        if start != covered:
            break
        flags.append(record["per_sample"])
        covered += record["n_examples"]
    if not flags:
        return None
    names = ["/".join(dict.fromkeys(names)) for names in zip(*(list(f) for f in flags), strict=True)]
    per_sample = {name: [v for f in flags for v in list(f.values())[i]] for i, name in enumerate(names)}
    return {"robust_acc": dict.fromkeys(names[1:]), "per_sample": per_sample}


def worst(per_sample: list[dict], only: str | None = None) -> list[bool]:
    """Per-sample robustness over per-sample flag dicts of :func:`evaluate` (all attacks, or attack ``only``), on the
    images they share (the first ones)."""
    n = min(len(f["clean"]) for f in per_sample)
    keys = [(f, k) for f in per_sample for k in f if only is None or k in ("clean", only)]
    return [all(f[k][i] for f, k in keys) for i in range(n)]


def mcnemar(a: list[bool], b: list[bool]) -> float:
    """Exact two-sided McNemar p-value of paired flags ``a`` and ``b`` (same images)."""
    from scipy.stats import binomtest

    only_a = sum(x and not y for x, y in zip(a, b, strict=True))
    only_b = sum(y and not x for x, y in zip(a, b, strict=True))
    return 1.0 if only_a + only_b == 0 else binomtest(only_a, only_a + only_b, 0.5).pvalue


def with_interval(p: float, n: int, z: float = 1.96) -> str:
    """``p`` of ``n`` trials in percent with its 95% Wilson interval, e.g. ``"68.0 [58.3, 76.3]"``."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"{100 * p:.1f} [{100 * (centre - half):.1f}, {100 * (centre + half):.1f}]"


def write_report(found: dict, out: Path, work: Path, command: str) -> None:
    """reproduction.md with the tables, the like-for-like comparison and the plots."""
    lines = ["# HoSNN on FashionMNIST: ours beside the paper's (eps 8/255)", "",
             f"Report: `{command}`; the evaluation commands are in each JSON (`command`).", "",
             "Each cell: robust accuracy (%) over n test images (the first n of the test set). 'paper-code' is the "
             "released attack code's threat model (no clamp, PGD alpha eps/3 without random start, BIM alpha eps/7): "
             "non-standard. `(cascade)` columns are AutoAttack and snn-adaptive members run as one cascade, so each "
             "is the accuracy left after it and every member before it.", ""]
    for threat in THREATS:
        rows = {run: robust_flags(recs, threat) for run, recs in found.items()}
        if not any(rows.values()):
            lines += [f"## Threat model: {threat}", "", "Not measured yet.", ""]
            continue
        cols = [c for c in ["clean", "fgsm", *PAPER_ATTACKS, "pgd7@hosnn-code", *APGD, "apgd-ce@hosnn-code",
                            "transfer-fgsm", "transfer-pgd7"] if any(c in r for r in rows.values())]
        cascade = list(dict.fromkeys(c for r in rows.values() for c in r if c.endswith("(cascade)")))
        cols += ["worst (suite)"] + cascade + ["worst case"]
        lines += [f"## Threat model: {threat}", "", "| model | " + " | ".join(cols) + " |",
                  "|---|" + "---:|" * len(cols)]
        for run, acc in rows.items():
            lines.append(f"| {run} | " + " | ".join(
                f"{100 * sum(acc[c]) / len(acc[c]):.2f} (n={len(acc[c])})" if c in acc else "-" for c in cols) + " |")
        lines.append("")
    lines += tuned_members(found) + like_for_like(found) + warm_start_ablation(found)
    lines += ["## Paper (METHODS 6), same columns", "", "| model | " + " | ".join(COLUMNS) + " |",
              "|---|" + "---:|" * len(COLUMNS)]
    for run, nums in PAPER.items():
        lines.append(f"| {run} (paper) | " + " | ".join(f"{nums[c]:.2f}" if c in nums else "-" for c in COLUMNS)
                     + " |")
    blackbox = ", ".join(f"{k} {v:.2f}" for k, v in PAPER_BLACKBOX["lif_fgsm"].items())
    lines += ["", f"Paper black box (Table 3), FGSM-trained SNN: {blackbox}.", ""]
    lines += audit_lines(found)
    (out / "reproduction.md").write_text("\n".join(lines) + "\n")
    plot_sweeps(found, out)
    plot_psc(out, work)


def like_for_like(found: dict) -> list[str]:
    """The paper's pairs beside ours: LIF vs HoSNN trained alike, with 95% Wilson intervals and a paired test."""
    lines = ["## Like with like: does TA-LIF add robustness over an equally trained LIF?", "",
             "| training | attack | threat model | n | LIF (ours) | HoSNN (ours) | HoSNN - LIF | McNemar p | paper LIF "
             "| paper HoSNN |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for training in ("clean", "fgsm"):
        paper = [PAPER.get(f"{m}_{training}", {}) for m in ("lif", "hosnn")]
        lines += paired_rows(found, f"lif_{training}", f"hosnn_{training}", training, paper)
    return lines + ["", PAIRED_NOTE, ""]


def warm_start_ablation(found: dict) -> list[str]:
    """The warm-start ablation: the FGSM-trained HoSNN from lif_clean's weights beside the one trained from scratch."""
    lines = ["## Ablation: warm start from the LIF weights (the paper trains from scratch)", "",
             "| training | attack | threat model | n | from scratch | warm start | warm - scratch | McNemar p |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    rows = paired_rows(found, "hosnn_fgsm", "hosnn_fgsm_warm", "fgsm")
    return lines + rows + ["", PAIRED_NOTE, ""] if rows else []


PAIRED_NOTE = ("Brackets: 95% Wilson intervals. McNemar: exact paired test on the same images (both models attacked on "
               "the first n test images); p < 0.05 = a difference the sample can resolve.")


def paired_rows(found: dict, run_a: str, run_b: str, training: str, paper: list[dict] | None = None) -> list[str]:
    """Table rows comparing ``run_a`` with ``run_b`` per attack and threat model on the images both saw, with the
    paper's numbers for the pair appended when ``paper`` is given."""
    a_records, b_records = found.get(run_a), found.get(run_b)
    if not a_records or not b_records:
        return []
    lines = []
    for threat in THREATS:
        a, b = robust_flags(a_records, threat), robust_flags(b_records, threat)
        for col in ("clean", "fgsm", "pgd7", "apgd-ce", "transfer-pgd7", "worst (suite)", "worst case"):
            if col not in a or col not in b:
                continue
            n = min(len(a[col]), len(b[col]))  # the images both models saw
            flags_a, flags_b = a[col][:n], b[col][:n]
            pa, pb = sum(flags_a) / n, sum(flags_b) / n
            cells = [training, col, threat, str(n), with_interval(pa, n), with_interval(pb, n),
                     f"{100 * (pb - pa):+.1f}", f"{mcnemar(flags_a, flags_b):.3f}"]
            if paper is not None:
                cells += ["-" if col not in nums else f"{nums[col]:.2f}" for nums in paper]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def audit_lines(found: dict) -> list[str]:
    """One line per model: the audit's raised flags."""
    lines = ["## Audit (gradient-obfuscation checklist)", "", "| model | n | flags raised | report |",
             "|---|---:|---|---|"]
    for run, recs in found.items():
        if "audit" in recs:
            flags = ", ".join(recs["audit"]["flags"]) or "none"
            n = recs["audit"]["n_examples"]
            lines.append(f"| {run} | {n} | {flags} | [{run}/audit.md]({run}/audit.md) |")
    return lines + [""]


def plot_sweeps(found: dict, out: Path) -> None:
    """sweeps.png: accuracy against eps for WB FGSM, WB PGD7 and BB PGD7, ours (solid) beside the paper (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threats = [t for t in THREATS if any(f"sweep-{t}" in r for r in found.values())]
    if not threats:
        return
    panels = [("fgsm", "white-box FGSM"), ("pgd7", "white-box PGD7"), ("transfer-pgd7", "black-box PGD7")]
    fig, axes = plt.subplots(len(threats), 3, figsize=(13, 3.8 * len(threats)), squeeze=False,
                             constrained_layout=True)
    for row, threat in enumerate(threats):
        for col, (key, title) in enumerate(panels):
            ax = axes[row][col]
            for i, (run, recs) in enumerate(found.items()):
                sweep = recs.get(f"sweep-{threat}")
                if sweep:
                    eta = [round(e * 255) for e in sweep["eps"]]
                    ax.plot(eta, [100 * v for v in sweep["robust_acc"][key]], marker="o", color=f"C{i}",
                            label=f"{run} (ours, n={sweep['n_examples']})")
                paper = PAPER_SWEEPS.get((run, key))
                if paper:
                    ax.plot(SWEEP_ETA, paper, linestyle="--", marker="x", color=f"C{i}", label=f"{run} (paper)")
            ax.set(title=f"{title} - {threat}", xlabel="eps (1/255)", ylabel="accuracy (%)", ylim=(-2, 100),
                   xlim=(-0.2, 70))
            ax.set_xscale("symlog", linthresh=2)
            ax.set_xticks(SWEEP_ETA)
            ax.set_xticklabels([str(e) for e in SWEEP_ETA])
            ax.grid(alpha=0.3)
    labelled = {label: handle for ax in fig.axes for handle, label in zip(*ax.get_legend_handles_labels(), strict=True)}
    axes[0][0].legend(labelled.values(), labelled.keys(), fontsize=7)
    fig.savefig(out / "sweeps.png", dpi=110)
    plt.close(fig)


def plot_psc(out: Path, work: Path) -> None:
    """psc_errors.png: layer-wise relative PSC error distributions (clean vs black-box PGD7), LIF beside HoSNN."""
    from spikeshield.report.plots import plot_layer_errors

    errors = {run: torch.load(work / f"psc_{run}.pt") for run in RUNS if (work / f"psc_{run}.pt").exists()}
    if errors:
        plot_layer_errors({run: {k: v.float() for k, v in e.items()} for run, e in errors.items()},
                          out / "psc_errors.png", title="relative PSC error, clean vs black-box PGD7 (8/255)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phase", choices=("train", "eval", "report", "all"), default="all")
    parser.add_argument("--device", default="auto", type=device_name, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64, help="training batch size")
    parser.add_argument("--batch-eval", type=int, default=250, help="images per attack call")
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--n-full", type=int, default=10000, help="clean and FGSM on the first N test images")
    parser.add_argument("--n", type=int, default=1000, help="the per-attack suite on the first N")
    parser.add_argument("--n-strong", type=int, default=1000, help="AutoAttack + snn-adaptive on the first N")
    parser.add_argument("--strong-from", type=int, default=0, help="... on test images K..K+N instead (a new piece)")
    parser.add_argument("--n-sweep", type=int, default=1000)
    parser.add_argument("--n-psc", type=int, default=500)
    parser.add_argument("--n-audit", type=int, default=200)
    parser.add_argument("--sweep-threats", default="standard,paper-code")
    parser.add_argument("--tune-examples", type=int, default=256, help="last training images to tune snn-adaptive")
    parser.add_argument("--preset", default="standard", help="snn-adaptive preset")
    parser.add_argument("--members", default=None, help="snn-adaptive members instead of the preset, comma list")
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--work", default="runs/hosnn")
    parser.add_argument("--out", default="benchmarks/results/hosnn")
    args = parser.parse_args()
    command = "python benchmarks/hosnn_reproduce.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.phase in ("train", "all"):
        train_or_load("lif_clean", args)  # every HoSNN needs its NDS
        train_or_load("lif_clean", args, seed=1, label="lif_source")
        for run in args.runs.split(","):
            train_or_load(run, args)
    if args.phase in ("eval", "all"):
        run_eval(args, command)
    if args.phase in ("report", "all"):
        write_report(load_pieces(out), out, Path(args.work), command)


if __name__ == "__main__":
    main()
