"""CPU scaling under torchrun: 2 processes x 1 thread against 1 process x 2 threads (and 1 x 1), for training and for
a sharded evaluation (issue 21, item 6).

Each setting trains the same LIF LeNet config for one epoch (the trainer's own ``epoch_time_s`` and
``images_per_s``), then evaluates its checkpoint under FGSM + PGD7 on the same test images (wall time of the whole
command, model loading included). Settings alternate over ``--rounds`` rounds so all see the same machine state; the
median is reported. The evaluations' JSON must agree across settings (the sharded run merges to the single-process
result): the script checks it.

    .venv/bin/python benchmarks/distributed_scaling.py --rounds 3     # benchmarks/results/distributed/
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

SETTINGS = {"1 process x 1 thread": (1, 1), "1 process x 2 threads": (1, 2), "2 processes x 1 thread": (2, 1)}
#: what may differ between the settings' evaluation records
RUN_DETAILS = ("time_s", "date", "command", "git_commit")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spikeshield(processes: int, threads: int, *args: str) -> float:
    """Run ``spikeshield ARGS`` (under torchrun when ``processes`` > 1); wall seconds."""
    if processes > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_addr",
               "127.0.0.1", "--master_port", str(_free_port()), "-m", "spikeshield", *args]
    else:
        cmd = [sys.executable, "-m", "spikeshield", *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{shlex.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - start


def _config(work: Path, name: str, args) -> Path:
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "seed": 0, "out_dir": str(work / name), "device": "cpu",
        "model": {"name": "lenet", "T": args.T},
        "data": {"batch_size": args.batch, "train_subset": args.train_images, "eval_subset": 512},
        "optim": {"epochs": 1}}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=4096)
    parser.add_argument("--eval-images", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--T", type=int, default=5)
    parser.add_argument("--work", default="runs/distributed_scaling")
    parser.add_argument("--out", default="benchmarks/results/distributed")
    args = parser.parse_args()
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    train_rate: dict[str, list[float]] = {name: [] for name in SETTINGS}
    eval_s: dict[str, list[float]] = {name: [] for name in SETTINGS}
    records: dict[str, dict] = {}
    for r in range(args.rounds):
        order = list(SETTINGS) if r % 2 == 0 else list(reversed(SETTINGS))
        for name in order:
            processes, threads = SETTINGS[name]
            label = f"p{processes}t{threads}"
            _spikeshield(processes, threads, "train", "--config", str(_config(work, label, args)), "--overwrite",
                         "--no-progress")
            metrics = json.loads((work / label / "metrics.jsonl").read_text().splitlines()[-1])
            train_rate[name].append(metrics["images_per_s"])
            eval_s[name].append(_spikeshield(
                processes, threads, "eval", "--checkpoint", str(work / "p1t1" / "model"), "--attacks", "fgsm,pgd7",
                "--n-examples", str(args.eval_images), "--batch-size", "16", "--device", "cpu", "--no-progress",
                "--out", str(work / f"eval_{label}")))
            record = json.loads((work / f"eval_{label}" / "eval.json").read_text())
            records[name] = {k: v for k, v in record.items() if k not in RUN_DETAILS}
            print(f"round {r + 1}: {name}: train {train_rate[name][-1]:.0f} img/s, eval {eval_s[name][-1]:.1f} s",
                  flush=True)
    reference = records["1 process x 1 thread"]
    same = {name: record == reference for name, record in records.items()}
    result = {
        "command": f"python benchmarks/distributed_scaling.py --rounds {args.rounds}",
        "cpu": platform.processor() or platform.machine(), "cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__, "model": "lenet", "neuron": "lif", "T": args.T, "batch": args.batch,
        "train_images": args.train_images, "eval_images": args.eval_images, "eval_attacks": "fgsm,pgd7",
        "rounds": args.rounds,
        "train_images_per_s": {name: statistics.median(v) for name, v in train_rate.items()},
        "eval_wall_s": {name: statistics.median(v) for name, v in eval_s.items()},
        "train_images_per_s_all": train_rate, "eval_wall_s_all": eval_s,
        "eval_json_equal_to_1x1": same,
    }
    (out / "scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    base_train, base_eval = result["train_images_per_s"]["1 process x 1 thread"], result["eval_wall_s"][
        "1 process x 1 thread"]
    lines = [f"# CPU scaling under torchrun ({result['cores']} cores)", "",
             f"`{result['command']}`: LIF LeNet T = {args.T}, batch {args.batch}, one epoch on {args.train_images} "
             f"FashionMNIST images; evaluation FGSM + PGD7 on {args.eval_images} test images (wall time of the "
             f"command). Median of {args.rounds} alternating rounds.", "",
             "| setting | train img/s | speed-up | eval wall (s) | speed-up | eval JSON = 1 x 1 |",
             "|---|---:|---:|---:|---:|---|"]
    for name in SETTINGS:
        rate, wall = result["train_images_per_s"][name], result["eval_wall_s"][name]
        lines.append(f"| {name} | {rate:.0f} | {rate / base_train:.2f}x | {wall:.1f} | {base_eval / wall:.2f}x | "
                     f"{'yes' if same[name] else 'NO'} |")
    (out / "scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
