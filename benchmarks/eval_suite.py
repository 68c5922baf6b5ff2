"""Cost of an attack suite run as a cascade against running every attack on every point; batched EOT against a loop.

Issue 3, item 6. A LeNet LIF SNN (T=5) is trained briefly on FashionMNIST (seeded), then evaluated on the first
``--n`` test images twice with the same attacks: once with every attack on every point (``cascade=False``: the sum of
running each attack alone) and once as a cascade (``cascade=True``: each attack only on the points still robust).
Reported: the ratio of attack seconds and of forward passes (the noise-free measure of work), cascade / sum, and
that both give the same worst case up to the attacks' randomness. Target: <= 0.6.

Second, on the same network with Poisson coding (a stochastic model), the seconds per EOT input gradient with
``eot=10`` draws in one batched pass against a Python loop of 10 single-draw gradients, alternating the two.

    .venv/bin/python benchmarks/eval_suite.py       # writes benchmarks/results/eval_suite.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.nn import functional as F

import spikeshield as ss
from spikeshield.attacks import PGD
from spikeshield.data import batches, load_dataset


def train_lenet(steps: int, T: int) -> torch.nn.Module:
    """LeNet LIF SNN after ``steps`` Adam steps of 64 training images (seed 0), in eval mode."""
    train = load_dataset("fashion_mnist", "train")
    torch.manual_seed(0)
    model = ss.models.create_model("lenet", dataset="fashion_mnist", T=T).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for x, y in itertools.islice(batches(train, 64, shuffle=True, seed=0), steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def suite_costs(model, x, y, attacks: str, batch: int) -> dict:
    """Evaluate all-on-all and as a cascade; return accuracies, attack seconds and forward passes of both."""
    out = {}
    for mode in (False, True):
        res = ss.evaluation.evaluate(model, x, y, attacks=attacks, eps=8 / 255, batch_size=batch, seed=0,
                                     cascade=mode, progress=False)
        names = list(res.robust_acc)
        out["cascade" if mode else "all_points"] = {
            "clean_acc": res.clean_acc, "robust_acc": res.robust_acc, "worst_case_acc": res.worst_case_acc,
            "attack_seconds": sum(res.time_s[n] for n in names),
            "attack_forward_passes": sum(res.number_forward_passes[n] for n in names),
            "seconds_per_attack": {n: res.time_s[n] for n in names},
        }
    return out


def eot_costs(model, x, y, draws: int, rounds: int) -> dict:
    """Median seconds per EOT gradient: one batched pass of ``draws`` copies against a loop of single draws."""
    batched = PGD(model, 8 / 255, eot=draws)
    single = PGD(model, 8 / 255, eot=1)

    def run_batched():
        t0 = time.perf_counter()
        batched.input_gradient(x, y)
        return time.perf_counter() - t0

    def run_loop():
        t0 = time.perf_counter()
        torch.stack([single.input_gradient(x, y) for _ in range(draws)]).mean(0)
        return time.perf_counter() - t0

    run_batched(), run_loop()  # warm-up
    times: dict[str, list[float]] = {"batched": [], "loop": []}
    for r in range(rounds):
        order = [("batched", run_batched), ("loop", run_loop)]
        for name, fn in order if r % 2 == 0 else reversed(order):
            times[name].append(fn())
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"draws": draws, "batch": x.shape[0], "rounds": rounds, "median_seconds": med,
            "ratio_batched_vs_loop": med["batched"] / med["loop"], "seconds": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="test images for the suite comparison")
    parser.add_argument("--attacks", default="fgsm,pgd20,apgd-ce,apgd-t")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--T", type=int, default=5)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--eot-rounds", type=int, default=8)
    parser.add_argument("--out", default="benchmarks/results/eval_suite.json")
    args = parser.parse_args()

    model = train_lenet(args.train_steps, args.T)
    test = load_dataset("fashion_mnist", "test")
    x, y = test.images[: args.n].float() / 255, test.labels[: args.n]
    suite = suite_costs(model, x, y, args.attacks, args.batch)
    ratio_s = suite["cascade"]["attack_seconds"] / suite["all_points"]["attack_seconds"]
    ratio_passes = suite["cascade"]["attack_forward_passes"] / suite["all_points"]["attack_forward_passes"]

    poisson = ss.models.create_model("lenet", dataset="fashion_mnist", T=args.T, encoder="poisson")
    poisson.load_state_dict(model.state_dict())
    eot = eot_costs(poisson.eval(), x[:64], y[:64], draws=10, rounds=args.eot_rounds)

    result = {
        "command": "python benchmarks/eval_suite.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "device": "cpu", "cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "model": f"lenet LIF T={args.T}, {args.train_steps} Adam steps",
        "n_examples": args.n, "attacks": args.attacks, "eps": "8/255",
        "suite": suite, "ratio_cascade_vs_sum_seconds": ratio_s, "ratio_cascade_vs_sum_forward_passes": ratio_passes,
        "eot": eot,
    }
    print(f"suite {args.attacks} on {args.n} images: clean {suite['all_points']['clean_acc']:.3f}, worst case "
          f"all-points {suite['all_points']['worst_case_acc']:.3f} / cascade {suite['cascade']['worst_case_acc']:.3f}")
    print(f"  attack seconds: sum {suite['all_points']['attack_seconds']:.1f}, cascade "
          f"{suite['cascade']['attack_seconds']:.1f} -> ratio {ratio_s:.3f} (forward passes {ratio_passes:.3f})")
    print(f"  EOT x10 gradient, batch 64: batched {eot['median_seconds']['batched']:.3f} s, loop "
          f"{eot['median_seconds']['loop']:.3f} s -> ratio {eot['ratio_batched_vs_loop']:.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
