"""Training throughput of the LIF LeNet against its ANN twin on the T*B folded batch (issue 2, item 11).

The SNN trains on batches of B images for T steps; its ANN twin (same layers, ReLU, no synapse) trains on batches
of T*B images, which is the same convolution work without the time loop. Rounds alternate the two in one process
(A/B, then B/A) so both see the same machine state; the ratio is ANN step time / SNN step time (1.0 = the time loop
is free). Also reported: the plain autograd LIF loop (the neuron's step function under autograd, what most SNN code
does) and each path's peak training memory.

    .venv/bin/python benchmarks/throughput.py            # CPU, writes benchmarks/results/throughput.json
    .venv/bin/python benchmarks/throughput.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch.nn import functional as F

import spikeshield as ss
from spikeshield.distributed import device_name
from spikeshield.neurons import LIF, TALIF, SpikingNeuron
from spikeshield.neurons.randhet import Heterogeneous


@contextmanager
def autograd_step_loop():
    """Run every LIF, TA-LIF and RandHet / Het neuron through its step function under autograd instead of the fused
    kernel (the reference path)."""
    fused = {neuron: neuron.run for neuron in (LIF, TALIF, Heterogeneous)}
    for neuron in fused:
        neuron.run = SpikingNeuron.run
    try:
        yield
    finally:
        for neuron, run in fused.items():
            neuron.run = run


AMP = {"enabled": False}  # set by --amp bf16: every timed training step runs as ``optim.amp: bf16`` training does


def train_step(model, opt, x, y):
    opt.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=AMP["enabled"]):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(model, opt, x, y, steps, device, generic=False):
    """Seconds per training step in steady state: one untimed step first, so the timed ones do not pay for the
    other model's memory layout (real training runs one model continuously)."""
    with autograd_step_loop() if generic else nullcontext():
        train_step(model, opt, x, y)
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            train_step(model, opt, x, y)
        sync(device)
    return (time.perf_counter() - start) / steps


def peak_memory_mb(model, opt, x, y, device, generic=False) -> float:
    """Peak training memory of one step: CUDA allocator peak, or on CPU the bytes autograd keeps for backward."""
    with autograd_step_loop() if generic else nullcontext():
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            train_step(model, opt, x, y)
            torch.cuda.synchronize()
            return (torch.cuda.max_memory_allocated() - base) / 2**20
        saved: dict[int, int] = {}

        def pack(t):
            storage = t.untyped_storage()
            saved[storage.data_ptr()] = storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        return sum(saved.values()) / 2**20


def cost_record(device, models, opts, x, y, paths: dict, train: dict, infer: dict) -> dict:
    """The fields a cost benchmark's JSON shares: device, medians of the interleaved training and inference times, and
    each path's training memory (``paths``: ``{path: (model name, step loop?)}``)."""
    return {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch_threads": torch.get_num_threads(),
        "train_step_s": {k: statistics.median(v) for k, v in train.items()},
        "inference_s": {k: statistics.median(v) for k, v in infer.items()},
        "peak_memory_mb": {path: peak_memory_mb(models[name], opts[name], x, y, device, generic=generic)
                           for path, (name, generic) in paths.items()},
        "memory_measure": "CUDA allocator peak" if device.type == "cuda" else "bytes saved by autograd for backward",
    }


def save_json(result: dict, out: str) -> Path:
    """Write ``result`` as indented JSON to ``out`` (creating its folder); returns the path."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def write_record(result: dict, out: str, script: str, argv: list[str]) -> None:
    """Add the command line to ``result``, write it as JSON to ``out`` and print it (without the command)."""
    result["command"] = f"python benchmarks/{script} " + " ".join(argv)
    save_json(result, out)
    print(json.dumps({k: v for k, v in result.items() if k != "command"}, indent=2))


def interleaved(runs: dict, rounds: int) -> dict[str, list[float]]:
    """Time each run once per round, alternating the order (A/B, then B/A), after one warm-up each."""
    for run in runs.values():  # warm-up: compile kernels, fill allocator caches
        run()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(rounds):
        for name in list(runs) if r % 2 == 0 else list(reversed(runs)):
            times[name].append(runs[name]())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", type=device_name, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--T", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=4, help="training steps per timed round")
    parser.add_argument("--neuron", default="lif", choices=("lif", "talif"), help="the SNN's neurons")
    parser.add_argument("--amp", default="none", choices=("none", "bf16"),
                        help="bf16: both models train under torch.autocast in bfloat16 (as optim.amp: bf16)")
    parser.add_argument("--out", default=None,
                        help="JSON path (default benchmarks/results/throughput[_cuda][_bB][_talif][_bf16].json)")
    args = parser.parse_args()
    device = torch.device(args.device)
    suffix = ("_cuda" if device.type == "cuda" else "") + (f"_b{args.batch}" if args.batch != 64 else "") + (
        "_talif" if args.neuron != "lif" else "") + ("_bf16" if args.amp == "bf16" else "")
    AMP["enabled"] = args.amp == "bf16"
    args.out = args.out or f"benchmarks/results/throughput{suffix}.json"
    torch.manual_seed(0)
    B, T = args.batch, args.T
    snn = ss.models.create_model("lenet", dataset="fashion_mnist", neuron=args.neuron, T=T).to(device).train()
    ann = ss.models.create_model("lenet", dataset="fashion_mnist", ann=True).to(device).train()
    opts = {id(m): torch.optim.Adam(m.parameters(), 1e-4) for m in (snn, ann)}
    x, y = torch.rand(B, 1, 28, 28, device=device), torch.randint(0, 10, (B,), device=device)
    x_fold, y_fold = torch.rand(T * B, 1, 28, 28, device=device), torch.randint(0, 10, (T * B,), device=device)
    pair = {
        "snn": lambda: time_steps(snn, opts[id(snn)], x, y, args.steps, device),
        "ann_folded": lambda: time_steps(ann, opts[id(ann)], x_fold, y_fold, args.steps, device),
    }
    reference = {"snn_autograd_loop": lambda: time_steps(snn, opts[id(snn)], x, y, args.steps, device, generic=True)}
    times = interleaved(pair, args.rounds)
    # The reference path allocates far more memory; it runs after the timed pair so it cannot disturb it.
    times.update(interleaved({**reference, "ann_folded_ref": pair["ann_folded"]}, max(2, args.rounds // 2)))
    ratios = [a / s for a, s in zip(times["ann_folded"], times["snn"], strict=True)]
    ratios_loop = [a / s for a, s in zip(times["ann_folded_ref"], times["snn_autograd_loop"], strict=True)]
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "model": "lenet", "neuron": args.neuron, "T": T, "batch": B, "amp": args.amp, "rounds": args.rounds,
        "steps_per_round": args.steps,
        "images_per_s": {
            "snn": B / med["snn"],
            "snn_autograd_loop": B / med["snn_autograd_loop"],
            "ann_folded_per_snn_image": B / med["ann_folded"],
        },
        "ratio_snn_vs_ann": statistics.median(ratios),
        "ratio_per_round": ratios,
        "ratio_quartiles": statistics.quantiles(ratios, n=4),
        "ratio_autograd_loop_vs_ann": statistics.median(ratios_loop),
        "peak_memory_mb": {
            "snn": peak_memory_mb(snn, opts[id(snn)], x, y, device),
            "snn_autograd_loop": peak_memory_mb(snn, opts[id(snn)], x, y, device, generic=True),
            "ann_folded": peak_memory_mb(ann, opts[id(ann)], x_fold, y_fold, device),
        },
        "memory_measure": "CUDA allocator peak" if device.type == "cuda" else "bytes saved by autograd for backward",
        "command": f"python benchmarks/throughput.py --device {device.type} --batch {B} --neuron {args.neuron} "
                   f"--amp {args.amp} --rounds {args.rounds}",
    }
    print(f"lenet {args.neuron} T={T} B={B} amp={args.amp} on {result['device']} ({result['torch_threads']} threads)")
    print(f"  SNN (fused LIF kernel)   {result['images_per_s']['snn']:8.1f} img/s  "
          f"ratio vs ANN {result['ratio_snn_vs_ann']:.3f}  peak {result['peak_memory_mb']['snn']:.0f} MB")
    print(f"  SNN (autograd step loop) {result['images_per_s']['snn_autograd_loop']:8.1f} img/s  "
          f"ratio vs ANN {result['ratio_autograd_loop_vs_ann']:.3f}  "
          f"peak {result['peak_memory_mb']['snn_autograd_loop']:.0f} MB")
    print(f"  ANN twin on T*B batch    {result['images_per_s']['ann_folded_per_snn_image']:8.1f} SNN-img/s "
          f"            peak {result['peak_memory_mb']['ann_folded']:.0f} MB")
    print(f"wrote {save_json(result, args.out)}")


if __name__ == "__main__":
    main()
