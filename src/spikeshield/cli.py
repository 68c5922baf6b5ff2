"""Command line: ``spikeshield train | eval | data | list``.

    spikeshield train --config configs/quick.yaml
    spikeshield eval --checkpoint runs/quick/model --attacks fgsm,pgd7 --eps 8/255 --n-examples 1000
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import yaml


def _train(args: argparse.Namespace) -> None:
    from spikeshield.training import train_from_file

    overrides = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set takes KEY=VALUE (e.g. optim.epochs=3); got {item!r}")
        overrides[key] = yaml.safe_load(value)
    result = train_from_file(args.config, resume=args.resume, overrides=overrides, progress=not args.no_progress,
                             overwrite=args.overwrite)
    print(f"checkpoint: {result.checkpoint}")


def _eval(args: argparse.Namespace) -> None:
    from spikeshield import checkpoint
    from spikeshield.data import load_dataset
    from spikeshield.evaluation import evaluate
    from spikeshield.report import print_table, write_report
    from spikeshield.validation import parse_eps

    eps = parse_eps(args.eps)
    model = checkpoint.load(args.checkpoint, device=args.device)
    data = load_dataset(model.info.name, args.split, data_dir=args.data_dir)
    n = min(args.n_examples or len(data), len(data))
    x, y = data.gather(slice(0, n)).float().div_(255), data.labels[:n]
    command = "spikeshield " + " ".join(shlex.quote(a) for a in args.argv)
    result = evaluate(model, x, y, attacks=args.attacks, eps=eps, batch_size=args.batch_size, seed=args.seed,
                      progress=not args.no_progress, eot=args.eot, command=command)
    print_table(result)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent
    out.mkdir(parents=True, exist_ok=True)
    result.save_json(out / "eval.json")
    write_report(result, out / "eval.md")
    print(f"wrote {out / 'eval.json'} and {out / 'eval.md'}")


def _data(args: argparse.Namespace) -> None:
    from spikeshield.data import load_dataset

    for split in ("train", "test"):
        data = load_dataset(args.dataset, split, data_dir=args.data_dir)
        print(f"{args.dataset} {split}: {len(data)} images, {data.info.channels}x{data.info.size}x{data.info.size}, "
              f"{data.info.num_classes} classes")


def _list(_: argparse.Namespace) -> None:
    from spikeshield.attacks import ATTACKS
    from spikeshield.data import DATASETS
    from spikeshield.encoding import ENCODERS
    from spikeshield.models import MODELS
    from spikeshield.neurons import NEURONS, SURROGATES

    for title, names in [("models", MODELS), ("neurons", NEURONS), ("surrogates", SURROGATES),
                         ("encoders", ENCODERS), ("attacks", ATTACKS), ("datasets", DATASETS)]:
        print(f"{title:11} {', '.join(sorted(names))}")


def build_parser() -> argparse.ArgumentParser:
    """The ``spikeshield`` argument parser."""
    parser = argparse.ArgumentParser(prog="spikeshield", description="Train robust SNNs and evaluate them honestly.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("--config", required=True, help="YAML file (see configs/ and docs/training.md)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start over even if out_dir holds a run")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. optim.epochs=3")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint under attacks")
    p.add_argument("--checkpoint", required=True, help="checkpoint directory written by training")
    p.add_argument("--attacks", default="fgsm,pgd7", help="comma list of attack names (spikeshield list)")
    p.add_argument("--eps", default="8/255", help="L-inf budget in pixel units, e.g. 8/255")
    p.add_argument("--n-examples", type=int, default=None, help="first N test images (default: all)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eot", type=int, default=None, help="EOT draws (default: 1, or 10 for stochastic models)")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--data-dir", default=None, help="directory holding the dataset files")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="directory for eval.json and eval.md (default: next to checkpoint)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_eval)

    p = sub.add_parser("data", help="locate (or download) a dataset and print what was found")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=_data)

    p = sub.add_parser("list", help="list models, neurons, surrogates, encoders, attacks and datasets")
    p.set_defaults(func=_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``spikeshield`` console script; bad input ends with a one-line error and exit code 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, TypeError, FloatingPointError) as e:
        print(f"spikeshield {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spikeshield {args.command}: interrupted (a training run resumes with --resume)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
