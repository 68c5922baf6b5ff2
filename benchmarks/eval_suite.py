"""Cost of an attack suite run as a cascade against running every attack on every point; batched EOT against a loop.

Issue 3, item 6. A LeNet LIF SNN (T=5) is trained briefly on FashionMNIST (seeded), then evaluated on the first
``--n`` test images twice with the same attacks: once with every attack on every point (``cascade=False``: the sum of
running each attack alone) and once as a cascade (``cascade=True``: each attack only on the points still robust).
Reported: the ratio of attack seconds and of forward passes (the noise-free measure of work), cascade / sum, and
that both give the same worst case up to the attacks' randomness. Target: <= 0.6.

Two suites: AutoAttack-like ``fgsm,pgd20,apgd-ce,apgd-t`` (dominated by APGD-T, which already skips fooled points
inside) and PGD7 through eight gradients (equal-cost members: the per-sample worst over gradients). Also reported:
the cascade against the strongest member alone on all points.

Second, on the same network with Poisson coding (a stochastic model), the seconds per EOT input gradient with
``eot=10`` draws batched (the default: in passes of at most ``CPU_IMAGES_PER_PASS`` images on the CPU) against a
Python loop of 10 single-draw gradients, alternating the two, for batches of 16 and 64 images.

    .venv/bin/python benchmarks/eval_suite.py       # writes benchmarks/results/eval_suite.json
    .venv/bin/python benchmarks/eval_suite.py --eot-only --out benchmarks/results/eval_suite_eot.json
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import time

import torch
from throughput import save_json
from torch.nn import functional as F

import spikeshield as ss
from spikeshield.attacks import PGD
from spikeshield.data import batches, load_dataset
from spikeshield.decision import CPU_IMAGES_PER_PASS


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
    """Evaluate all-on-all and as a cascade; return accuracies, attack seconds and forward passes of both, and the
    cascade's cost relative to the sum and to the strongest (most expensive) member alone."""
    out: dict = {"attacks": attacks}
    for mode in (False, True):
        res = ss.evaluation.evaluate(model, x, y, attacks=attacks, eps=8 / 255, batch_size=batch, seed=0,
                                     cascade=mode, progress=False)
        names = list(res.robust_acc)
        out["cascade" if mode else "all_points"] = {
            "clean_acc": res.clean_acc, "robust_acc": res.robust_acc, "worst_case_acc": res.worst_case_acc,
            "attack_seconds": sum(res.time_s[n] for n in names),
            "attack_forward_passes": sum(res.number_forward_passes[n] for n in names),
            "seconds_per_attack": {n: res.time_s[n] for n in names},
            "forward_passes_per_attack": {n: res.number_forward_passes[n] for n in names},
        }
    full, cascade = out["all_points"], out["cascade"]
    strongest = max(full["forward_passes_per_attack"], key=full["forward_passes_per_attack"].get)
    out["ratio_cascade_vs_sum_seconds"] = cascade["attack_seconds"] / full["attack_seconds"]
    out["ratio_cascade_vs_sum_forward_passes"] = cascade["attack_forward_passes"] / full["attack_forward_passes"]
    out["strongest_member"] = strongest
    out["ratio_cascade_vs_strongest_forward_passes"] = (cascade["attack_forward_passes"]
                                                        / full["forward_passes_per_attack"][strongest])
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
    parser.add_argument("--suites", nargs="+", default=[
        "fgsm,pgd20,apgd-ce,apgd-t",
        "pgd7,pgd7@rga,pgd7@bptr,pgd7@ann,pgd7@triangle-0.5,pgd7@triangle-2,pgd7@rectangle-1,pgd7@straight_through"])
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--T", type=int, default=5)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--eot-rounds", type=int, default=8)
    parser.add_argument("--eot-only", action="store_true", help="skip the suites, measure only batched EOT")
    parser.add_argument("--out", default="benchmarks/results/eval_suite.json")
    args = parser.parse_args()

    model = train_lenet(args.train_steps, args.T)
    test = load_dataset("fashion_mnist", "test")
    x, y = test.images[: args.n].float() / 255, test.labels[: args.n]
    suites = [] if args.eot_only else [suite_costs(model, x, y, attacks, args.batch) for attacks in args.suites]

    poisson = ss.models.create_model("lenet", dataset="fashion_mnist", T=args.T, encoder="poisson")
    poisson.load_state_dict(model.state_dict())
    eot = [eot_costs(poisson.eval(), x[:b], y[:b], draws=10, rounds=args.eot_rounds) for b in (16, 64)]

    result = {
        "command": "python benchmarks/eval_suite.py " + " ".join(
            f"--{k.replace('_', '-')} {v if not isinstance(v, list) else ' '.join(v)}"
            for k, v in vars(args).items() if k not in ("out", "eot_only")) + (" --eot-only" if args.eot_only else ""),
        "device": "cpu", "cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "model": f"lenet LIF T={args.T}, {args.train_steps} Adam steps",
        "n_examples": args.n, "eps": "8/255", "cpu_images_per_pass": CPU_IMAGES_PER_PASS,
        "suites": suites, "eot": eot,
    }
    for suite in suites:
        full, cascade = suite["all_points"], suite["cascade"]
        print(f"suite {suite['attacks']} on {args.n} images: clean {full['clean_acc']:.3f}, worst case all-points "
              f"{full['worst_case_acc']:.3f} / cascade {cascade['worst_case_acc']:.3f}")
        print(f"  cascade / sum: {suite['ratio_cascade_vs_sum_forward_passes']:.3f} in forward passes, "
              f"{suite['ratio_cascade_vs_sum_seconds']:.3f} in seconds ({full['attack_seconds']:.1f} s all points); "
              f"cascade / strongest member ({suite['strongest_member']}) alone: "
              f"{suite['ratio_cascade_vs_strongest_forward_passes']:.3f} in forward passes")
    for e in eot:
        print(f"  EOT x10 gradient, batch {e['batch']}: batched {e['median_seconds']['batched']:.3f} s, loop "
              f"{e['median_seconds']['loop']:.3f} s -> ratio {e['ratio_batched_vs_loop']:.3f}")
    print(f"wrote {save_json(result, args.out)}")


if __name__ == "__main__":
    main()
