"""The accuracy effect of bfloat16 mixed precision (``optim.amp: bf16``) on training (issue 21, item 4).

Trains the same LIF LeNet config twice from the same seed, once in float32 and once under ``torch.autocast``
(bfloat16 convolutions and matmuls, neurons in float32), and scores both on the same test images: clean accuracy and
PGD7 at 8/255 through the model's own surrogate. On a CPU without bfloat16 hardware the bf16 run is slower; the
speed of AMP is a GPU question (docs/scale-out.md), the accuracy effect is not.

    .venv/bin/python benchmarks/amp_accuracy.py --epochs 2 --train-images 8000     # benchmarks/results/amp.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from spikeshield.data import load_dataset
from spikeshield.distributed import device_name
from spikeshield.evaluation import evaluate
from spikeshield.training import train_from_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/fashion_lenet_clean.yaml")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-images", type=int, default=8000)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--attack-images", type=int, default=256)
    parser.add_argument("--device", default="auto", type=device_name, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--work", default="runs/amp")
    parser.add_argument("--out", default="benchmarks/results/amp.json")
    args = parser.parse_args()
    test = load_dataset("fashion_mnist", "test")
    x, y = test.images[: args.test_images].float().div(255), test.labels[: args.test_images]
    runs = {}
    for amp in ("none", "bf16"):
        result = train_from_file(args.config, overwrite=True, progress=False, overrides={
            "optim.amp": amp, "optim.epochs": args.epochs, "data.train_subset": args.train_images,
            "data.eval_subset": args.test_images, "out_dir": f"{args.work}/{amp}", "device": args.device})
        model = result.model.eval()
        scored = evaluate(model, x[: args.attack_images], y[: args.attack_images], attacks="pgd7", eps=8 / 255,
                          progress=False)
        with torch.no_grad():
            clean = sum(int((model(x[i:i + 500].to(args.device)).argmax(1).cpu() == y[i:i + 500]).sum())
                        for i in range(0, len(y), 500)) / len(y)
        runs[amp] = {"test_acc": clean, "pgd7_8_255": scored.robust_acc["pgd7"],
                     "clean_on_attack_images": scored.clean_acc,
                     "epoch_time_s": [m["epoch_time_s"] for m in result.history],
                     "train_loss": [m["train_loss"] for m in result.history]}
        print(amp, json.dumps(runs[amp]), flush=True)
    record = {"command": f"python benchmarks/amp_accuracy.py --epochs {args.epochs} --train-images "
                         f"{args.train_images}", "config": args.config, "device": args.device,
              "torch": torch.__version__, "test_images": args.test_images, "attack_images": args.attack_images,
              "runs": runs, "test_acc_change_points": 100 * (runs["bf16"]["test_acc"] - runs["none"]["test_acc"])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"bf16 - float32 test accuracy: {record['test_acc_change_points']:+.2f} points")


if __name__ == "__main__":
    main()
