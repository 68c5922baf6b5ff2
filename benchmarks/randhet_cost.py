"""Cost of RandHet-SNN's random time constants against the plain LIF (issue 17, item 2; the paper: +8% training,
+25% inference time).

One network with four neurons, each through its fused kernel (the default): LIF (tau 2, threshold 0.5, detached
reset: RandHet at sigma 0), RandHet (a time constant per step, sample and neuron), RandHet* (one per forward pass), Het
(learned per neuron); and RandHet through the plain autograd step loop. Training-step time, inference time (no-grad
forward) and training memory, rounds interleaved in one process (benchmarks/throughput.py's helpers). The target: a
RandHet training step at most 1.15x the fused LIF step.

    .venv/bin/python benchmarks/randhet_cost.py                  # CPU, writes benchmarks/results/randhet/cost.json
    .venv/bin/python benchmarks/randhet_cost.py --model sew_resnet19 --width 0.125 --out /tmp/cost_sew.json
"""

from __future__ import annotations

import argparse
import sys
from functools import partial

import torch
from hosnn_cost import inference_time
from throughput import cost_record, interleaved, time_steps, write_record

import spikeshield as ss
from spikeshield.distributed import device_name

#: RandHet at sigma 0 (METHODS 2): tau 2 in time-constant form, threshold 0.5, detached reset, arctan surrogate
PLAIN_LIF = dict(tau_m=2.0, theta=0.5, form="tau", detach_reset=True, surrogate="arctan")
NEURONS = {"lif": ("lif", PLAIN_LIF), "randhet": ("randhet", {}), "randhet_fwd": ("randhet_fwd", {}),
           "het": ("het", {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", type=device_name, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--width", type=float, default=None, help="width multiplier (ResNet-19s)")
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/randhet/cost.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    extra = {"width": args.width} if args.width is not None else {}
    models = {name: ss.models.create_model(args.model, dataset="fashion_mnist", neuron=neuron, neuron_params=params,
                                           T=args.T, synapse=None, **extra).to(device).train()
              for name, (neuron, params) in NEURONS.items()}
    opts = {name: torch.optim.Adam(m.parameters(), 1e-4) for name, m in models.items()}
    x, y = torch.rand(args.batch, 1, 28, 28, device=device), torch.randint(0, 10, (args.batch,), device=device)
    paths = {**{name: (name, False) for name in models}, "randhet_step_loop": ("randhet", True)}
    train = interleaved({path: partial(time_steps, models[n], opts[n], x, y, args.steps, device, generic=g)
                         for path, (n, g) in paths.items()}, args.rounds)
    infer = interleaved({path: partial(inference_time, models[n].eval(), x, args.steps, device, generic=g)
                         for path, (n, g) in paths.items()}, args.rounds)
    for m in models.values():
        m.train()
    result = cost_record(device, models, opts, x, y, paths, train, infer)
    med, med_inf = result["train_step_s"], result["inference_s"]
    result.update({
        "model": args.model, "width": args.width, "T": args.T, "batch": args.batch, "rounds": args.rounds,
        "steps_per_round": args.steps,
        "train_vs_lif": {k: v / med["lif"] for k, v in med.items()},
        "inference_vs_lif": {k: v / med_inf["lif"] for k, v in med_inf.items()},
        "target": "randhet train step <= 1.15x lif", "target_met": med["randhet"] / med["lif"] <= 1.15,
    })
    write_record(result, args.out, "randhet_cost.py", sys.argv[1:])


if __name__ == "__main__":
    main()
