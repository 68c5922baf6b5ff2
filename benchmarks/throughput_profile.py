"""Where a LIF LeNet training step spends its time against its ANN twin (issue 21, item 4): kernel launches and GPU
busy time per step, from ``torch.profiler``, for the pair that ``benchmarks/throughput.py`` times.

A step whose GPU busy time is far below its wall time is bound by the host (the CPU issuing kernels), not by the
GPU; the per-op counts name the launches the SNN adds, the host table where the CPU's time goes.

    python benchmarks/throughput_profile.py --device cuda --batch 64     # benchmarks/results/throughput_profile.json
"""

from __future__ import annotations

import argparse
import collections
import time

import torch
from throughput import AMP, save_json, sync, train_step
from torch.profiler import ProfilerActivity, profile

import spikeshield as ss
from spikeshield.distributed import device_name


def profile_steps(model, x, y, steps: int, device: torch.device) -> dict:
    """Per training step: wall seconds, kernels launched, GPU busy seconds, and the ops that launch the most."""
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    for _ in range(3):  # compile kernels, fill the allocator's caches
        train_step(model, opt, x, y)
    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            train_step(model, opt, x, y)
        sync(device)
        wall = (time.perf_counter() - start) / steps
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    ops = collections.Counter(e.key for e in prof.key_averages() for _ in range(e.count)
                              if e.key.startswith(("aten::", "LIF", "TALIF")) and e.cpu_parent is None)
    return {
        "wall_s": wall,
        "kernels_per_step": len(kernels) / steps,
        "gpu_busy_s": sum(e.device_time_total for e in kernels) / 1e6 / steps,
        "top_kernels": collections.Counter(e.name[:80] for e in kernels).most_common(15),
        "top_ops": [(k, n / steps) for k, n in ops.most_common(15)],
        "host_us_per_step": [(e.key, e.count / steps, e.cpu_time_total / steps, e.self_cpu_time_total / steps)
                             for e in sorted(prof.key_averages(), key=lambda e: -e.cpu_time_total)[:25]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", type=device_name, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--T", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="profiled training steps per model")
    parser.add_argument("--amp", default="none", choices=("none", "bf16"))
    parser.add_argument("--out", default="benchmarks/results/throughput_profile.json")
    args = parser.parse_args()
    AMP["enabled"] = args.amp == "bf16"
    device = torch.device(args.device)
    torch.manual_seed(0)
    B, T = args.batch, args.T
    snn = ss.models.create_model("lenet", dataset="fashion_mnist", T=T).to(device).train()
    ann = ss.models.create_model("lenet", dataset="fashion_mnist", ann=True).to(device).train()
    result = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch": torch.__version__, "batch": B, "T": T, "amp": args.amp,
        "snn": profile_steps(snn, torch.rand(B, 1, 28, 28, device=device),
                             torch.randint(0, 10, (B,), device=device), args.steps, device),
        "ann_folded": profile_steps(ann, torch.rand(T * B, 1, 28, 28, device=device),
                                    torch.randint(0, 10, (T * B,), device=device), args.steps, device),
        "command": f"python benchmarks/throughput_profile.py --device {device.type} --batch {B} --amp {args.amp}",
    }
    for name in ("snn", "ann_folded"):
        r = result[name]
        print(f"{name:11s} wall {r['wall_s'] * 1e3:6.2f} ms  GPU busy {r['gpu_busy_s'] * 1e3:6.2f} ms  "
              f"kernels {r['kernels_per_step']:5.0f}")
        print("   ops:", ", ".join(f"{k} {n:g}" for k, n in r["top_ops"]))
        print("   kernels:", ", ".join(f"{k} x{n}" for k, n in r["top_kernels"]))
        print("   host (name, calls, total us, self us per step):")
        for k, n, total, own in r["host_us_per_step"]:
            print(f"     {k[:60]:60s} {n:5g} {total:8.1f} {own:8.1f}")
    print(f"wrote {save_json(result, args.out)}")


if __name__ == "__main__":
    main()
