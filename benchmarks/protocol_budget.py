"""Is the budget-aware protocol as strong as the full one, and what does it cost? (issue 22, item 3)

For each model (checkpoints of ``spikeshield benchmark``'s work folder): the members of AutoAttack (``rand`` for a
random model) and ``snn-adaptive`` (standard, HART/ASSG tuned once on the pilot) are planned on pilot images (the
last training images), then on other test images (after the board's first 64) three things run: the full, unordered
protocol (every member on every image), the planned cascade, and an independent cheap ensemble (the reference APGD-CE
through five other gradients). Reported: the images the full protocol or the ensemble breaks that the plan misses
(zero expected; the tolerance, fixed before the run, is 1 image in 64), and the plan's cost in own-surrogate APGD-CE
runs (forward passes and seconds; target <= 5).

    .venv/bin/python benchmarks/protocol_budget.py --models lif_fgsm,hosnn_fgsm --n 48
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from spikeshield import checkpoint
from spikeshield.attacks import SNNAdaptive, make_attack
from spikeshield.benchmark.budget import members_of, plan, verify
from spikeshield.benchmark.entries import ENTRIES
from spikeshield.data import load_dataset
from spikeshield.distributed import device_name
from spikeshield.evaluation import evaluate
from spikeshield.evaluation.robustness import _build_attacks

EPS = 8 / 255
#: the independent ensemble: the reference APGD-CE through five other gradients
ENSEMBLE = ("apgd-ce@triangle-0.5", "apgd-ce@rga", "apgd-ce@bptr", "apgd-ce@pdsg", "apgd-ce@ann")
#: images the plan may miss per 64 before the check fails (stated before the run)
TOLERANCE_PER_64 = 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="lif_fgsm,hosnn_fgsm")
    parser.add_argument("--work", default="runs/leaderboard/quick")
    parser.add_argument("--n", type=int, default=48, help="pilot images, and as many verification images")
    parser.add_argument("--device", default="auto", type=device_name, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--out", default="benchmarks/results/leaderboard/budget.json")
    args = parser.parse_args()
    by_name = {e.name: e for e in ENTRIES}
    test, train = load_dataset("fashion_mnist", "test"), load_dataset("fashion_mnist", "train")
    pilot = slice(len(train) - args.n, len(train))
    pilot_x, pilot_y = train.gather(pilot).float().div(255).to(args.device), train.labels[pilot].to(args.device)
    held = slice(64, 64 + args.n)  # after the board's scored images
    x, y = test.gather(held).float().div(255).to(args.device), test.labels[held].to(args.device)
    out_path = Path(args.out)
    report = json.loads(out_path.read_text()) if out_path.exists() else {}
    for name in args.models.split(","):
        entry = by_name[name]
        model = checkpoint.load(Path(args.work) / name / entry.checkpoint, device=args.device).eval()
        stochastic = bool(getattr(model, "is_stochastic", False))
        torch.manual_seed(0)
        adaptive = SNNAdaptive(model, EPS, preset="standard", tune_on=(pilot_x, pilot_y))
        members = members_of(model, EPS, ["autoattack-rand" if stochastic else "autoattack-standard", adaptive])
        named = _build_attacks(model, members, EPS, eot=None, grad=None, clamp=True, stochastic=stochastic)[0]
        planned = plan(model, pilot_x, pilot_y, list(named.values()), EPS)
        checked = verify(model, x, y, list(named.values()), planned, EPS)
        ensemble = evaluate(model, x, y, attacks=[make_attack(a, model, EPS) for a in ENSEMBLE], eps=EPS,
                            cascade=False, progress=False)
        reference = evaluate(model, x, y, attacks=[make_attack("apgd-ce", model, EPS)], eps=EPS, progress=False)
        fast_robust = checked["fast_robust"]
        missed_ensemble = [i for i, (r, e) in enumerate(zip(fast_robust, ensemble.per_sample["worst_case"],
                                                            strict=True)) if r and not e]
        ref_passes = reference.number_forward_passes["apgd-ce"]
        ref_seconds = reference.time_s["apgd-ce"]
        record = {
            "n": args.n, "stochastic": stochastic, "tuned": adaptive.tuned_values(),
            "plan": {k: v for k, v in planned.items() if k != "attacks"},
            "verify": {k: v for k, v in checked.items() if k != "fast_robust"},
            "missed_vs_full": len(checked["missed"]), "missed_vs_ensemble": len(missed_ensemble),
            "ensemble_worst_case_acc": ensemble.worst_case_acc,
            "tolerance": TOLERANCE_PER_64 * args.n / 64,
            "cost_in_apgd_ce": {"fast_passes": checked["fast_forward_passes"] / ref_passes,
                                "full_passes": checked["full_forward_passes"] / ref_passes,
                                "fast_seconds": checked["fast_seconds"] / ref_seconds,
                                "full_seconds": checked["full_seconds"] / ref_seconds},
        }
        record["holds"] = max(record["missed_vs_full"], record["missed_vs_ensemble"]) <= record["tolerance"]
        report[name] = record
        print(name, json.dumps({k: record[k] for k in ("missed_vs_full", "missed_vs_ensemble", "cost_in_apgd_ce",
                                                       "holds")}), flush=True)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
