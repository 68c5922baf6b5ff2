"""Training cost of purification against adversarial training (issue 19, item 6; the paper: purification costs 93.9%
less than AT), measured as step times in one process, interleaved round by round so that load on the machine falls on
all of them alike.

Steps, on one batch of 64 FashionMNIST images with the configs of configs/purification/: the classifier's clean step
(SENet-18 MLF), its FGSM-AT step (the example crafted in training mode, then the update) and the purifier's step (FGSM
16/255 on the frozen classifier, the purifier's forward, backward and update, the classifier on the purified batch for
the logged accuracy); for context also a PGD-AT step (7 steps), the usual AT baseline, which configs/purification/
does not train. A run's cost is its step time times its number of steps (the configs' images, batch and epochs).

    python benchmarks/purification_cost.py --rounds 10        # benchmarks/results/purification/cost.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from spikeshield.config import load_config
from spikeshield.data import load_dataset
from spikeshield.models import Pipeline, build_model
from spikeshield.training.objectives import get_objective
from spikeshield.training.trainer import make_optimizer, make_training_attack

CONFIGS = {"clean": "senet18", "at": "senet18_at", "pgd_at": "senet18_at", "purifier": "purifier"}
#: PGD-AT (7 steps of 2.5 eps / 7 at 8/255), the usual AT baseline, as an override of the FGSM-AT config
OVERRIDES = {"pgd_at": {"adversarial.attack": "pgd", "adversarial.steps": 7}}


def stepper(kind: str, x: torch.Tensor, y: torch.Tensor):
    """A function running one training step of ``kind`` on ``(x, y)`` as the trainer does."""
    cfg = load_config(f"configs/purification/{CONFIGS[kind]}.yaml", OVERRIDES.get(kind))
    torch.manual_seed(0)
    if kind == "purifier":
        classifier = build_model(load_config("configs/purification/senet18.yaml").model.kwargs()).eval()
        model = Pipeline([("purifier", build_model(cfg.model.kwargs())), ("classifier", classifier)],
                         frozen=["classifier"])
        attack = make_training_attack(classifier, cfg)
    else:
        model = build_model(cfg.model.kwargs())
        attack = make_training_attack(model, cfg)
    optimizer = make_optimizer(model, cfg)
    objective = get_objective(cfg.objective, **cfg.objective_params)

    def step() -> None:
        model.train()
        inputs = attack(x, y) if attack is not None else x
        optimizer.zero_grad(set_to_none=True)
        if kind == "purifier":
            loss, _ = objective(model, inputs, y, clean=x)
        else:
            loss, _ = objective(model, inputs, y)
        loss.backward()
        optimizer.step()

    steps = cfg.optim.epochs * -(-(cfg.data.train_subset or 60000) // cfg.data.batch_size)
    return step, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/purification/cost.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("fashion_mnist", "train")
    x, y = data.images[:64].float().div(255), data.labels[:64]
    steps = {kind: stepper(kind, x, y) for kind in CONFIGS}
    times: dict[str, list[float]] = {kind: [] for kind in CONFIGS}
    for step, _ in steps.values():  # warm-up: compiled kernels, allocator
        step()
    for _ in range(args.rounds):
        for kind, (step, _) in steps.items():
            started = time.perf_counter()
            step()
            times[kind].append(time.perf_counter() - started)
    step_s = {kind: statistics.median(t) for kind, t in times.items()}
    run_s = {kind: step_s[kind] * steps[kind][1] for kind in CONFIGS}
    record = {
        "command": f"python benchmarks/purification_cost.py --rounds {args.rounds}",
        "threads": 1, "batch": 64, "rounds": args.rounds, "step_s": step_s, "steps_per_run": {k: v[1] for k, v in
                                                                                             steps.items()},
        "run_s": run_s,
        "purifier_vs_at": 1 - run_s["purifier"] / run_s["at"],
        "purifier_and_classifier_vs_at": 1 - (run_s["purifier"] + run_s["clean"]) / run_s["at"],
        "per_step_purifier_vs_at": step_s["purifier"] / step_s["at"],
        "purifier_vs_pgd_at": 1 - run_s["purifier"] / run_s["pgd_at"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
