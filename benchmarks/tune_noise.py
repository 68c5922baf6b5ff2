"""Is a change of the tuned ASSG ``A`` a change of strength, or the run-to-run noise of a random model? (issue 22)

Runs the budget plan's cascade (``spikeshield.benchmark.budget.PLAN``, as the quick board's ``robust`` cell) on the
board's test images with one ``A`` and one evaluation seed per call, and adds the result to a JSON record keyed by
``A`` and seed (a killed or repeated run keeps what is there). Compare two values of ``A`` across seeds: if the
spread over seeds at one ``A`` covers the difference between the values, the tuning's choice did not change the
verdict. ``robust_acc`` is the board's number (majority votes over fresh draws at each image's strongest point);
``expected_acc`` is the per-draw accuracy at those points with its 95% interval, which moves less from run to run.

    .venv/bin/python benchmarks/tune_noise.py --model randhet_rat --A 0.45 --seed 1   # and --A 0.41
    .venv/bin/python benchmarks/tune_noise.py --model rsc_erst --A 0.45 --seed 1      # and --A 0.43; seed 2 too

The records (tune_noise_randhet_rat.json, tune_noise_rsc_erst.json) and what they settle: docs/leaderboard.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from protocol_budget import load

from spikeshield.attacks import SNNAdaptive
from spikeshield.benchmark.budget import PLAN
from spikeshield.benchmark.entries import PRESETS
from spikeshield.benchmark.protocol import EPS
from spikeshield.data import load_dataset
from spikeshield.evaluation import evaluate
from spikeshield.fileio import atomic_write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="randhet_rat", help="a board entry (its quick checkpoint under --work)")
    parser.add_argument("--A", type=float, required=True, help="ASSG's A for the plan's SA-PGD member")
    parser.add_argument("--seed", type=int, required=True, help="the evaluation's seed (the board's cell uses 0)")
    parser.add_argument("--work", default="runs/leaderboard/quick")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/leaderboard/tune_noise_MODEL.json")
    args = parser.parse_args()
    model = load(args.model, Path(args.work), "cpu")
    n = PRESETS["quick"].n_eval
    test = load_dataset("fashion_mnist", "test")
    x, y = test.gather(slice(0, n)).float().div_(255), test.labels[:n]
    suite = SNNAdaptive(model, EPS, members=list(PLAN), tuned={"assg": args.A})
    result = evaluate(model, x, y, attacks=[suite], eps=EPS, cascade=True, seed=args.seed, progress=True)
    out = Path(args.out or f"benchmarks/results/leaderboard/tune_noise_{args.model}.json")
    record = json.loads(out.read_text()) if out.exists() else {"model": args.model, "plan": list(PLAN), "runs": {}}
    key = f"A={args.A:g},seed={args.seed}"
    record["runs"][key] = {
        "A": args.A, "seed": args.seed, "n": n, "clean_acc": result.clean_acc, "robust_acc": result.worst_case_acc,
        "expected_acc": result.expected_acc.get("worst_case"), "broken_by": result.broken_by,
        "seconds": result.time_s.get("total"),
        "command": f"python benchmarks/tune_noise.py --model {args.model} --A {args.A:g} --seed {args.seed}"}
    atomic_write_text(out, json.dumps(record, indent=1) + "\n")
    print(json.dumps(record["runs"][key]))


if __name__ == "__main__":
    main()
