"""Every published SNN gradient on FashionMNIST (issue 8, items 6 and 7): how far does each lower the naive number?

Three METHODS 1 LeNets (LIF, tau_m 5, tau_s 3, T 5): clean-trained, FGSM-trained at 2/255 and Poisson-coded. On the
first N test images at eps 8/255 (clamped, the standard threat model): FGSM, PGD7, PGD40, APGD-CE, APGD-DLR and SA-PGD
through the model's own surrogate; APGD-CE and SA-PGD through every other gradient mode; the ``snn-adaptive``
ensemble (standard and quick presets, HART's g and ASSG's A tuned on the last 256 training images); time per attack.
Then the published claims are checked on these numbers, and the quick preset's cost is compared with own-surrogate
APGD-CE on the same points (item 7).

    python benchmarks/snn_attacks.py --device cuda --data-dir .gpudata            # GPU: minutes per model
    python benchmarks/snn_attacks.py --n 16 --epochs 1 --train-subset 512 --models clean   # CPU smoke run

Writes benchmarks/results/snn_attacks/{<model>.json, snn_attacks.md, snn_attacks.png}.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from spikeshield import checkpoint
from spikeshield.attacks import SNNAdaptive
from spikeshield.attacks.adaptive import SURROGATE_SWEEP
from spikeshield.data import load_dataset
from spikeshield.distributed import device_name
from spikeshield.evaluation import evaluate
from spikeshield.training import train_from_file

MODELS = {
    "clean": ("configs/fashion_lenet_clean.yaml", {}),
    "fgsm": ("configs/fashion_lenet_fgsm.yaml", {}),
    "poisson": ("configs/fashion_lenet_clean.yaml", {"model.encoder": "poisson"}),
}
OWN = ["fgsm", "pgd7", "pgd40", "apgd-ce", "apgd-dlr", "sapgd"]
#: every other gradient mode, oldest published first among the SNN-specific ones (BPTR 2022, RGA 2023, HART 2024,
#: PDSG 2025, ASSG 2025); HART's g and ASSG's A are filled in by tuning
MODES = [*SURROGATE_SWEEP, "ann", "ann-clamp", "bptr", "rga", "hart", "hart-mix", "pdsg", "assg"]
NEWER = ["bptr", "rga", "hart", "pdsg", "assg"]


def train_or_load(name: str, args) -> torch.nn.Module:
    """The trained model ``name``: from its checkpoint under ``--work`` if there, else trained now."""
    path = Path(args.work) / name / "model"
    if not path.exists():
        config, extra = MODELS[name]
        overrides = {"device": args.device, "out_dir": f"{args.work}/{name}", "data.data_dir": args.data_dir,
                     "optim.epochs": args.epochs, "data.batch_size": args.batch, **extra}
        if args.train_subset:
            overrides.update({"data.train_subset": args.train_subset, "data.eval_subset": args.train_subset})
        t0 = time.perf_counter()
        result = train_from_file(config, overrides=overrides, overwrite=True, progress=False)
        print(f"{name}: trained {len(result.history)} epochs in {time.perf_counter() - t0:.0f} s, "
              f"test acc {result.history[-1]['test_acc']:.4f}", flush=True)
    return checkpoint.load(path, device=args.device).eval()


def tuned_modes(model, eps: float, tune_on) -> tuple[dict[str, str], dict]:
    """Each tunable mode's name with the value chosen on the tuning images, and the tuning record."""
    probe = SNNAdaptive(model, eps, members=["apgd-ce@hart", "apgd-ce@hart-mix", "sapgd@assg"], tune_on=tune_on)
    chosen = {name.split("@")[1].rsplit("-", 1)[0]: name.split("@")[1] for name in probe.members}
    return chosen, probe.tuned


def run_model(name: str, model, x, y, tune_on, args, command: str) -> dict:
    """All attacks on one model; returns the JSON record."""
    eps = 8 / 255
    modes, tuning = tuned_modes(model, eps, tune_on)
    attacks = OWN + [f"{atk}@{modes.get(m, m)}" for m in MODES for atk in ("apgd-ce", "sapgd")]
    common = dict(eps=eps, batch_size=args.eval_batch, seed=0, progress=False, command=command, eot=args.eot)
    singles = evaluate(model, x, y, attacks=attacks, cascade=False, **common)
    print(f"{name}: {len(attacks)} attacks in {singles.time_s['total']:.0f} s, worst case "
          f"{singles.worst_case_acc:.4f}", flush=True)
    suites = {}
    for preset in ("quick", "standard"):
        suite = SNNAdaptive(model, eps, preset=preset, tune_on=tune_on, eot=args.eot)
        t0 = time.perf_counter()
        result = evaluate(model, x, y, attacks=suite, **common)
        suites[preset] = {"robust_acc": result.worst_case_acc, "seconds": time.perf_counter() - t0,
                          "forward_passes": result.number_forward_passes["total"], "broken_by": result.broken_by,
                          "members": list(result.robust_acc), "tuned": suite.tuned}
        print(f"{name}: snn-adaptive {preset} {result.worst_case_acc:.4f} in {suites[preset]['seconds']:.0f} s",
              flush=True)
    apgd_s, apgd_passes = singles.time_s["apgd-ce"], singles.number_forward_passes["apgd-ce"]
    speed = {preset: {"time_ratio": s["seconds"] / apgd_s, "pass_ratio": s["forward_passes"] / apgd_passes}
             for preset, s in suites.items()}
    metrics = Path(args.work) / name / "metrics.jsonl"
    training = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
    return {"model": name, "config": MODELS[name], "training": training, "clean_acc": singles.clean_acc,
            "robust_acc": singles.robust_acc, "time_s": singles.time_s, "worst_case_single": singles.worst_case_acc,
            "tuned": tuning, "modes": modes, "suites": suites, "speed_vs_apgd_ce": speed,
            "claims": check_claims(singles.robust_acc, suites["standard"]["robust_acc"], modes),
            "eval": singles.to_dict()}


def speed(name: str, model, x, y, tune_on, args, command: str) -> dict:
    """Item 7 alone: the quick preset's time and forward passes against own-surrogate APGD-CE on the same points."""
    common = dict(eps=8 / 255, batch_size=args.eval_batch, seed=0, progress=False, command=command, eot=args.eot)
    apgd = evaluate(model, x, y, attacks="apgd-ce", **common)
    suite = SNNAdaptive(model, 8 / 255, preset="quick", tune_on=tune_on, eot=args.eot)
    quick = evaluate(model, x, y, attacks=suite, **common)
    record = {"model": name, "device": quick.device, "n": quick.n_examples, "members": list(quick.robust_acc),
              "robust_after_apgd_ce": apgd.robust_acc["apgd-ce"], "quick_robust": quick.worst_case_acc,
              "apgd_ce_s": apgd.time_s["apgd-ce"], "quick_s": quick.time_s["total"],
              "time_ratio": quick.time_s["total"] / apgd.time_s["apgd-ce"],
              "pass_ratio": quick.number_forward_passes["total"] / apgd.number_forward_passes["apgd-ce"],
              "command": command}
    print(json.dumps(record, indent=2), flush=True)
    return record


def check_claims(acc: dict[str, float], ensemble: float, modes: dict[str, str]) -> dict[str, dict]:
    """The published claims, each with the numbers it rests on and whether it holds here."""
    own = acc["apgd-ce"]
    newer = {m: acc[f"apgd-ce@{modes.get(m, m)}"] for m in NEWER}
    strongest = min(acc, key=acc.get)
    assg = acc[f"sapgd@{modes['assg']}"]
    return {
        "each newer gradient is stronger than plain BPTT (APGD-CE through it < through the own surrogate)":
            {"holds": all(v < own for v in newer.values()), "own": own, "by_mode": newer},
        "ASSG + SA-PGD is the strongest single attack":
            {"holds": assg <= min(acc.values()), "assg_sapgd": assg, "strongest": strongest,
             "strongest_acc": acc[strongest]},
        "the ensemble is at or below every member":
            {"holds": ensemble <= min(acc.values()), "ensemble": ensemble, "min_single": min(acc.values())},
    }


def write_report(records: list[dict], out: Path, command: str) -> None:
    """snn_attacks.md (tables and claims) and snn_attacks.png (bars per attack and model)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731

    def generic(r: dict) -> dict[str, str]:  # row name -> this model's attack name (tuned modes carry a value)
        pairs = ("apgd-ce", "sapgd")
        actual = {f"{atk}@{mode}": f"{atk}@{tuned}" for mode, tuned in r["modes"].items() for atk in pairs}
        return {row: actual.get(row, row) for row in OWN + [f"{atk}@{m}" for m in MODES for atk in pairs]}

    rows = [generic(r) for r in records]
    names = list(rows[0])
    lines = ["# Every SNN gradient on FashionMNIST (LeNet, T=5, eps 8/255, clamped)", "",
             f"Command: `{command}`", "",
             f"First {records[0]['eval']['n_examples']} test images. Robust accuracy in % (correct clean and under the "
             "attack); each attack run on every point (no cascade). Seconds are wall-clock on the device named in "
             "each JSON.", "",
             "| attack | " + " | ".join(f"{r['model']} (%) | s" for r in records) + " |",
             "|---|" + "---:|---:|" * len(records)]
    for a in names:
        cells = [f"{pct(r['robust_acc'][row[a]])}{'' if row[a] == a else ' (' + row[a].split('@')[1] + ')'} | "
                 f"{r['time_s'][row[a]]:.1f}" for r, row in zip(records, rows, strict=True)]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    lines.append("| clean | " + " | ".join(f"{pct(r['clean_acc'])} | " for r in records) + " |")
    lines.append("| worst case over the rows above | " + " | ".join(f"{pct(r['worst_case_single'])} | "
                                                                     for r in records) + " |")
    for preset in ("quick", "standard"):
        lines.append(f"| **snn-adaptive {preset}** (cascade) | " + " | ".join(
            f"**{pct(r['suites'][preset]['robust_acc'])}** | {r['suites'][preset]['seconds']:.1f}" for r in records)
            + " |")
    lines += ["", "Presets as run: " + "; ".join(f"{p} = {', '.join(records[0]['suites'][p]['members'])}"
                                              for p in ("quick", "standard"))]
    lines += ["", f"## Tuned on the last {records[0]['tuned']['hart']['n_images']} training images", ""]
    for r in records:
        lines.append(f"- {r['model']}: " + "; ".join(f"{m}: {t}" for m, t in r["tuned"].items()))
    lines += ["", "## Published claims, checked", ""]
    for claim in records[0]["claims"]:
        lines.append(f"- {claim}: " + "; ".join(
            f"{r['model']} **{'holds' if r['claims'][claim]['holds'] else 'does not hold'}**" for r in records))
    lines += ["", "## Cost of the ensemble (item 7)", "",
              "| model | quick / APGD-CE (time) | quick / APGD-CE (passes) | standard / APGD-CE (time) |",
              "|---|---:|---:|---:|"]
    for r in records:
        s = r["speed_vs_apgd_ce"]
        lines.append(f"| {r['model']} | {s['quick']['time_ratio']:.2f} | {s['quick']['pass_ratio']:.2f} | "
                     f"{s['standard']['time_ratio']:.2f} |")
    (out / "snn_attacks.md").write_text("\n".join(lines) + "\n")

    fig, axes = plt.subplots(1, len(records), figsize=(5 * len(records), 0.22 * len(names) + 1.5), sharey=True)
    for ax, r, row in zip([axes] if len(records) == 1 else axes, records, rows, strict=True):
        values = [100 * r["robust_acc"][row[a]] for a in names]
        colors = ["tab:red" if "@" not in a else "tab:blue" for a in names]
        ax.barh(range(len(names)), values, color=colors)
        ax.axvline(100 * r["suites"]["standard"]["robust_acc"], color="black", ls="--", lw=1,
                   label="snn-adaptive (standard)")
        ax.set_title(f"{r['model']} (clean {100 * r['clean_acc']:.1f}%)", fontsize=9)
        ax.set_xlabel("robust accuracy (%)")
    ax.legend(fontsize=7, loc="lower right")
    (axes if len(records) == 1 else axes[0]).set_yticks(range(len(names)), names, fontsize=6)
    fig.suptitle("LeNet on FashionMNIST, eps 8/255: red = own surrogate, blue = other gradient modes", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "snn_attacks.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", type=device_name, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--models", default="clean,fgsm,poisson")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64, help="training batch size")
    parser.add_argument("--train-subset", type=int, default=None, help="smoke runs: train on N images")
    parser.add_argument("--n", type=int, default=1000, help="first N test images")
    parser.add_argument("--eot", type=int, default=None, help="EOT draws (default: 1, or 10 for Poisson)")
    parser.add_argument("--eval-batch", type=int, default=1000)
    parser.add_argument("--tune-n", type=int, default=256, help="the last N training images tune HART and ASSG")
    parser.add_argument("--work", default="runs/snn_attacks")
    parser.add_argument("--out", default="benchmarks/results/snn_attacks")
    parser.add_argument("--train-only", action="store_true", help="train (or find) the models, attack nothing")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the JSON files in --out")
    parser.add_argument("--speed-only", action="store_true",
                        help="only item 7: the quick preset against APGD-CE, written to speed_<model>_<device>.json")
    args = parser.parse_args()
    command = "python benchmarks/snn_attacks.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        records = [json.loads((out / f"{name}.json").read_text()) for name in args.models.split(",")]
        write_report(records, out, records[0]["eval"]["command"])
        return
    test = load_dataset("fashion_mnist", "test", data_dir=args.data_dir)
    train = load_dataset("fashion_mnist", "train", data_dir=args.data_dir)
    x, y = test.images[: args.n].float().div(255).to(args.device), test.labels[: args.n].to(args.device)
    tail = slice(len(train) - args.tune_n, len(train))
    tune_on = (train.gather(tail).float().div(255).to(args.device), train.labels[tail].to(args.device))
    records = []
    for name in args.models.split(","):
        model = train_or_load(name, args)
        if args.train_only:
            continue
        if args.speed_only:
            record = speed(name, model, x, y, tune_on, args, command)
            (out / f"speed_{name}_{args.device.split(':')[0]}.json").write_text(json.dumps(record, indent=2) + "\n")
            continue
        record = run_model(name, model, x, y, tune_on, args, command)
        (out / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
        records.append(record)
    if args.train_only or args.speed_only:
        return
    write_report(records, out, command)
    print((out / "snn_attacks.md").read_text())


if __name__ == "__main__":
    main()
