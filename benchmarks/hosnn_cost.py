"""Cost of HoSNN's TA-LIF against LIF (issue 9, item 7; the paper claims under 10% extra).

The METHODS 1 LeNet (T 5, tau_s 3) with LIF and with TA-LIF neurons, each through its fused kernel (the default) and
through the plain autograd step loop: training-step time, inference time (no-grad forward) and training memory, rounds
interleaved in one process (benchmarks/throughput.py's helpers).

    .venv/bin/python benchmarks/hosnn_cost.py                  # CPU, writes benchmarks/results/hosnn/cost.json
    .venv/bin/python benchmarks/hosnn_cost.py --device cuda
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from functools import partial

import torch
from throughput import autograd_step_loop, cost_record, interleaved, sync, time_steps, write_record

import spikeshield as ss
from spikeshield.distributed import device_name


def inference_time(model, x, steps: int, device, generic: bool = False) -> float:
    """Seconds per no-grad forward pass in steady state."""
    with torch.no_grad(), autograd_step_loop() if generic else nullcontext():
        model(x)
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            model(x)
        sync(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", type=device_name, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/hosnn/cost.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    models = {name: ss.models.create_model("lenet", neuron=name, T=5).to(device).train() for name in ("lif", "talif")}
    opts = {name: torch.optim.Adam(m.parameters(), 1e-4) for name, m in models.items()}
    x, y = torch.rand(args.batch, 1, 28, 28, device=device), torch.randint(0, 10, (args.batch,), device=device)
    paths = {f"{name}{suffix}": (name, suffix == "_step_loop") for name in models for suffix in ("", "_step_loop")}
    train = interleaved({path: partial(time_steps, models[n], opts[n], x, y, args.steps, device, generic=g)
                         for path, (n, g) in paths.items()}, args.rounds)
    infer = interleaved({path: partial(inference_time, models[n].eval(), x, args.steps, device, generic=g)
                         for path, (n, g) in paths.items()}, args.rounds)
    for m in models.values():
        m.train()
    result = cost_record(device, models, opts, x, y, paths, train, infer)
    med, med_inf = result["train_step_s"], result["inference_s"]
    result.update({
        "batch": args.batch, "T": 5, "rounds": args.rounds,
        "talif_vs_lif_train": med["talif"] / med["lif"],
        "talif_vs_lif_inference": med_inf["talif"] / med_inf["lif"],
        "talif_vs_lif_step_loop_train": med["talif_step_loop"] / med["lif_step_loop"],
        "talif_vs_lif_step_loop_inference": med_inf["talif_step_loop"] / med_inf["lif_step_loop"],
        "talif_fused_vs_step_loop_train": med["talif"] / med["talif_step_loop"],
    })
    write_record(result, args.out, "hosnn_cost.py", sys.argv[1:])


if __name__ == "__main__":
    main()
