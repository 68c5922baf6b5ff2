"""How much do gradients that do not trust the model's own surrogate lower a LIF LeNet's PGD7 robustness?

Issue 3, item 1: a LIF LeNet trained clean on FashionMNIST kept far more accuracy under PGD7 with its own sigmoid
surrogate (8/255) than the HoSNN paper reports for the same setting (about 31%). This script attacks one such model
with PGD7 through every gradient of METHODS 7 that spikeshield has (its own surrogate; the 19 variants of Ozdenizci
& Legenstein: triangle, exponential and rectangle widths, straight-through, BPTR, the ANN twin; and RGA), plus
APGD-CE through its own surrogate and through RGA and the ANN twin, and reports each one's robust accuracy and the
per-sample worst case over all of them.

    .venv/bin/python benchmarks/adaptive_gradients.py --epochs 3        # trains (or reuses) runs/adaptive/model

Writes benchmarks/results/adaptive_gradients.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from spikeshield import checkpoint  # noqa: E402
from spikeshield.attacks import adaptive_attacks, make_attack  # noqa: E402
from spikeshield.data import load_dataset  # noqa: E402
from spikeshield.evaluation import evaluate  # noqa: E402
from spikeshield.training import train_from_file  # noqa: E402

EPS = 8 / 255


def trained_model(work: Path, epochs: int):
    """The clean LeNet of configs/fashion_lenet_clean.yaml trained for ``epochs`` (reused if already there)."""
    if (work / "model" / "config.json").exists():
        return checkpoint.load(work / "model")
    overrides = {"device": "cpu", "out_dir": str(work), "optim.epochs": epochs}
    return train_from_file("configs/fashion_lenet_clean.yaml", overrides=overrides, overwrite=True).model


def plot(robust: dict[str, float], worst: float, own: str, path: Path) -> None:
    """Horizontal bars of robust accuracy per gradient, the model's own surrogate and the worst case marked."""
    names = sorted(robust, key=robust.get)
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(names) + 1.2))
    colours = ["tab:red" if n == own else "tab:blue" for n in names]
    ax.barh(names, [100 * robust[n] for n in names], color=colours)
    ax.axvline(100 * worst, color="black", linestyle=":", label=f"worst case over all: {100 * worst:.1f}%")
    ax.set_xlabel("robust accuracy (%) at eps 8/255")
    ax.set_title("PGD7 / APGD-CE through different gradients (red: the model's own surrogate)", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n", type=int, default=1000, help="test images")
    parser.add_argument("--work", default="runs/adaptive")
    parser.add_argument("--out", default="benchmarks/results/adaptive_gradients")
    args = parser.parse_args()
    command = "python benchmarks/adaptive_gradients.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    model = trained_model(Path(args.work), args.epochs).eval()
    test = load_dataset("fashion_mnist", "test")
    x, y = test.images[: args.n].float() / 255, test.labels[: args.n]
    attacks = [make_attack("pgd7", model, EPS), *adaptive_attacks("pgd7", model, EPS),
               make_attack("pgd7@rga", model, EPS), make_attack("apgd-ce", model, EPS),
               make_attack("apgd-ce@rga", model, EPS), make_attack("apgd-ce@ann", model, EPS)]
    result = evaluate(model, x, y, attacks=attacks, eps=EPS, batch_size=250, seed=0, command=command)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"command": command, "epochs": args.epochs, "eval": result.to_dict()}
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    rows = sorted(result.robust_acc.items(), key=lambda kv: kv[1])
    lines = [f"# PGD7 / APGD-CE through different gradients (eps 8/255, {result.n_examples} test images)", "",
             f"Command: `{command}`", "", f"Clean accuracy {100 * result.clean_acc:.2f}%; per-sample worst case over "
             f"all {len(rows)} attacks {100 * result.worst_case_acc:.2f}%.", "",
             "| attack@gradient | robust acc. (%) |", "|---|---|"]
    lines += [f"| {name} | {100 * acc:.2f} |" for name, acc in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(result.robust_acc, result.worst_case_acc, "pgd7", out.with_suffix(".png"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
