"""The budget protocol's recorded check: plan it, then verify that it is as strong as the full protocol and an
independent ensemble, and what it costs (issue 22, item 3).

1. Pilot, per model (checkpoints of ``spikeshield benchmark``'s work folder): every member of AutoAttack (``rand``
   for a random model) and ``snn-adaptive`` standard (HART/ASSG tuned once on the pilot) runs on every pilot image
   (the last training images) - the full, unordered protocol - recording which images each fools and its seconds.
2. One plan for all models (:func:`spikeshield.benchmark.budget.pool`): members ordered greedily by new breaks per
   second over the pooled pilots; a member that fooled no pooled image the kept ones did not is dropped, with that
   record. This is the order ``spikeshield.benchmark.budget.PLAN`` must equal (a test keeps them equal).
3. Verify, per model, on other test images (after the board's first 64): the full, unordered protocol, the planned
   cascade, and an independent cheap ensemble - torchattacks' port of the reference APGD-CE (Croce & Hein's code, not
   ours) through five gradients. Reported: the images the full protocol or the ensemble breaks that the plan misses
   (zero expected; the tolerance, fixed before the run, is 1 image in 64), and the plan's cost in own-surrogate
   APGD-CE runs (forward passes and seconds; target <= 5).

    .venv/bin/python benchmarks/protocol_budget.py --models lif_fgsm,hosnn_fgsm,snn_rat --n 32
    .venv/bin/python benchmarks/protocol_budget.py --verify-plan --models snn_rat,rsc_direct --offset 128 \
        --out benchmarks/results/leaderboard/budget_round3.json     # the recorded plan on more models

A killed run resumes: finished pilots and verifications in the output file are kept.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from spikeshield import checkpoint, decision
from spikeshield.attacks import SNNAdaptive, make_attack
from spikeshield.attacks.bpda import with_ann_gradients
from spikeshield.benchmark.budget import PLAN, PLAN_RECORD, members_of, plan, pool, verify
from spikeshield.benchmark.entries import ENTRIES
from spikeshield.data import load_dataset
from spikeshield.distributed import device_name
from spikeshield.evaluation import evaluate
from spikeshield.neurons.gradients import gradient_mode

EPS = 8 / 255
#: the independent ensemble: torchattacks' reference APGD-CE (100 steps) through five gradients, fixed before the run
ENSEMBLE = ({"name": "triangle", "gamma": 0.5}, "rga", "bptr", "pdsg", "ann")
#: images the plan may miss per 64 before the check fails (stated before the run)
TOLERANCE_PER_64 = 1


def reference_apgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, grad) -> torch.Tensor:
    """Still-correct mask after torchattacks' APGD-CE through ``grad`` (the decision rule for a random model)."""
    import torchattacks

    stochastic = decision.declared_stochastic(model)
    target = with_ann_gradients(model) if grad == "ann" else model
    attack = torchattacks.APGD(target, norm="Linf", eps=EPS, steps=100, n_restarts=1, loss="ce", seed=0,
                               eot_iter=20 if stochastic else 1)
    with gradient_mode(None if grad == "ann" else grad):
        x_adv = attack(x, y)
    ok, _, _ = decision.judge(model, x_adv.detach(), y, decision.DEFAULT_EOT if stochastic else 1)
    return ok


def ensemble_robust(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[bool]:
    """Per image: correct clean and not fooled by any of :data:`ENSEMBLE`."""
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    for grad in ENSEMBLE:
        ok &= reference_apgd(model, x, y, grad)
    return ok.tolist()


def load(name: str, work: Path, device: str) -> torch.nn.Module:
    """The benchmark's trained checkpoint of entry ``name``, in eval mode."""
    entry = {e.name: e for e in ENTRIES}[name]
    return checkpoint.load(work / name / entry.checkpoint, device=device).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="lif_fgsm,hosnn_fgsm,snn_rat")
    parser.add_argument("--work", default="runs/leaderboard/quick")
    parser.add_argument("--n", type=int, default=32, help="pilot images per model, and as many verification images")
    parser.add_argument("--device", default="auto", type=device_name, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--out", default="benchmarks/results/leaderboard/budget.json")
    parser.add_argument("--offset", type=int, default=64, help="first verification test image (the board scores 64)")
    parser.add_argument("--pilots-from", default=None, help="take the pilots of an earlier record of this script")
    parser.add_argument("--verify-plan", action="store_true", help="no pilots: verify the code's PLAN (its record: "
                        "budget.PLAN_RECORD) on more models, HART/ASSG tuned on the pilot images")
    parser.add_argument("--add", default="", help="comma list of members appended to the pooled plan (an amendment "
                        "after a verification missed images: verify it on new images with a new --offset)")
    args = parser.parse_args()
    names = args.models.split(",")
    test, train = load_dataset("fashion_mnist", "test"), load_dataset("fashion_mnist", "train")
    pilot = slice(len(train) - args.n, len(train))
    pilot_x, pilot_y = train.gather(pilot).float().div(255).to(args.device), train.labels[pilot].to(args.device)
    held = slice(args.offset, args.offset + args.n)  # after the board's scored images
    x, y = test.gather(held).float().div(255).to(args.device), test.labels[held].to(args.device)
    out_path = Path(args.out)
    report = json.loads(out_path.read_text()) if out_path.exists() else {}
    setup = {"n": args.n, "models": names, "offset": args.offset, "added": [a for a in args.add.split(",") if a],
             "verify_plan": args.verify_plan}
    if any(report.get(k) != v for k, v in setup.items()):
        report = {**setup, "tolerance_per_64": TOLERANCE_PER_64, "pilots": {}, "verify": {}}
    if args.pilots_from:
        report["pilots_from"] = args.pilots_from
        report["pilots"] = json.loads(Path(args.pilots_from).read_text())["pilots"]

    def save() -> None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(report, indent=1) + "\n")

    def suite_members(model, tuned: dict) -> list:
        stochastic = decision.declared_stochastic(model)
        adaptive = SNNAdaptive(model, EPS, preset="standard", tuned=tuned)
        return members_of(model, EPS, ["autoattack-rand" if stochastic else "autoattack-standard", adaptive])

    for name in names:
        if name in report["pilots"]:
            continue
        model = load(name, Path(args.work), args.device)
        torch.manual_seed(0)
        tuned = SNNAdaptive(model, EPS, preset="standard", tune_on=(pilot_x, pilot_y)).tuned_values()
        if args.verify_plan:
            report["pilots"][name] = {"tuned": tuned}
            continue
        planned = plan(model, pilot_x, pilot_y, suite_members(model, tuned), EPS)
        report["pilots"][name] = {"tuned": tuned, **{k: v for k, v in planned.items() if k != "attacks"}}
        print(name, "pilot:", planned["order"], flush=True)
        save()
    report["plan"] = {"order": list(PLAN), "record": PLAN_RECORD} if args.verify_plan else pool(report["pilots"])
    report["plan"]["order"] += [a for a in report["added"] if a not in report["plan"]["order"]]
    report["plan_equals_code"] = report["plan"]["order"] == list(PLAN)
    print("pooled plan:", report["plan"]["order"], "(code's PLAN equal:", report["plan_equals_code"], ")", flush=True)
    save()

    for name in names:
        if name in report["verify"]:
            continue
        model = load(name, Path(args.work), args.device)
        torch.manual_seed(0)
        tuned = report["pilots"][name]["tuned"]
        fast = SNNAdaptive(model, EPS, members=report["plan"]["order"], tuned=tuned)
        checked = verify(model, x, y, suite_members(model, tuned), list(fast.members.values()), EPS)
        ensemble = ensemble_robust(model, x, y)
        reference = evaluate(model, x, y, attacks=[make_attack("apgd-ce", model, EPS)], eps=EPS, progress=False)
        missed_ensemble = [i for i, (r, e) in enumerate(zip(checked["fast_robust"], ensemble, strict=True))
                           if r and not e]
        ref_passes, ref_seconds = reference.number_forward_passes["apgd-ce"], reference.time_s["apgd-ce"]
        record = {
            **{k: v for k, v in checked.items() if k != "fast_robust"},
            "missed_vs_full": len(checked["missed"]), "missed_vs_ensemble": len(missed_ensemble),
            "ensemble_worst_case_acc": sum(ensemble) / len(ensemble), "apgd_ce_acc": reference.worst_case_acc,
            "tolerance": TOLERANCE_PER_64 * args.n / 64,
            "cost_in_apgd_ce": {"fast_passes": checked["fast_forward_passes"] / ref_passes,
                                "full_passes": checked["full_forward_passes"] / ref_passes,
                                "fast_seconds": checked["fast_seconds"] / ref_seconds,
                                "full_seconds": checked["full_seconds"] / ref_seconds},
        }
        record["holds"] = max(record["missed_vs_full"], record["missed_vs_ensemble"]) <= record["tolerance"]
        report["verify"][name] = record
        missed = sum(max(v["missed_vs_full"], v["missed_vs_ensemble"]) for v in report["verify"].values())
        report["missed_pooled"] = {"images": missed, "of": args.n * len(report["verify"]),
                                   "tolerance": TOLERANCE_PER_64 * args.n * len(report["verify"]) / 64}
        print(name, json.dumps({k: record[k] for k in ("missed_vs_full", "missed_vs_ensemble", "cost_in_apgd_ce",
                                                       "holds")}), flush=True)
        save()


if __name__ == "__main__":
    main()
