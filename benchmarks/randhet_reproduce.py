"""RandHet-SNN reproduction on FashionMNIST (issue 17, items 5 and 6): SNN, Het-SNN, RandHet and RandHet* with AT, RAT
and SR (configs/randhet/), judged with EOT and the decision rule, beside the paper's CIFAR-10 numbers (METHODS 2).

Phase ``train`` trains the runs of configs/randhet/ under --work (two processes can share the list: each claims a run).
Phase ``eval`` attacks each model of --runs at eps 8/255, one resumable piece at a time (a piece whose JSON exists is
skipped; processes sharing --out claim pieces, so start it twice for two cores):

- ``full``: clean and FGSM (EOT) on the first --n-full test images;
- ``attacks``: FGSM, PGD10 (alpha 1.6/255), APGD-CE (--apgd-steps) and MI-FGSM, each on its own, with EOT (10 draws per
  gradient on a random model) and the decision rule, on the first --n; their per-sample worst case is the MRA;
- ``no-eot``: the same attacks with one draw per gradient (``eot=1``), the paper's Table 1 MRA;
- ``agcs``: AGCS (gradient cosine of two draws) with its histogram on the first --n-full, and the cosine of two PGD10
  perturbations on the first --n;
- ``strong`` (--strong-runs): snn-adaptive-quick then AutoAttack (``rand``: APGD-CE/DLR with EOT 20 on a random model;
  ``standard`` on a deterministic one) as one cascade on the first --n-strong;
- ``eot-sweep`` (--sweep-runs): PGD10 with m = 1, 5, 10, 20, 50 EOT draws on the first --n;
- ``audit``: the gradient-obfuscation checklist on the first --n-audit.

Each piece JSON's ``time_s`` is the piece's wall time. Phase ``report`` writes reproduction.md, the JSON summary and
the plots.

    python benchmarks/randhet_reproduce.py --phase train        # start twice for two cores
    python benchmarks/randhet_reproduce.py --phase eval         # start twice for two cores
    python benchmarks/randhet_reproduce.py --phase report
    python benchmarks/randhet_reproduce.py --phase all --train-subset 512 --n-full 32 --n 8 --n-strong 4 --n-audit 4 \
        --apgd-steps 5 --work /tmp/randhet --out /tmp/randhet-out        # smoke

Writes <out>/{<run>/<piece>.json, reproduction.md, summary.json, eot_sweep.png, agcs.png, sigma.png}.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch
from hosnn_reproduce import claim

from spikeshield import checkpoint
from spikeshield.attacks import make_attack
from spikeshield.data import load_dataset
from spikeshield.distributed import device_name
from spikeshield.evaluation import agcs, audit, evaluate, perturbation_cosine
from spikeshield.training import train_from_file

EPS = 8 / 255
RUNS = ("snn_at", "het_at", "randhet_at", "randhet_fwd_at", "snn_rat", "randhet_rat", "snn_sr", "randhet_sr",
        "randhet_at_sigma0.5", "randhet_at_sigma2")
ATTACKS = ("fgsm", "pgd10", "apgd-ce", "mifgsm")
EOT_SWEEP = (1, 5, 10, 20, 50)
#: METHODS 2, paper Table 1 (CIFAR-10, SEW-ResNet19, no EOT): clean, FGSM, PGD10, APGD10, MI-FGSM, AA, MRA
PAPER_COLUMNS = ("clean", "fgsm", "pgd10", "apgd", "mifgsm", "aa", "mra")
PAPER = {
    "snn_at": (86.38, 49.48, 41.10, 33.31, 45.24, 29.29, 29.29),
    "randhet_at": (87.36, 50.13, 41.79, 47.60, 45.12, 48.59, 41.79),
    "randhet_fwd_at": (87.29, 52.58, 44.33, 50.65, 46.73, 50.34, 44.33),
    "snn_rat": (89.55, 52.21, 42.09, 34.49, 46.76, 30.36, 30.36),
    "randhet_rat": (90.25, 53.53, 44.86, 47.20, 47.46, 47.76, 44.86),
    "snn_sr": (87.13, 50.41, 43.35, 36.08, 46.42, 32.96, 32.96),
    "randhet_sr": (88.11, 50.98, 44.19, 47.54, 46.76, 47.45, 44.19),
}


def train_from_configs(args, configs: str = "configs/randhet", prepare=None) -> None:
    """Phase train: every run of --runs whose checkpoint is missing, one claimed run at a time, from
    ``<configs>/<run>.yaml``; ``prepare(run, overrides)``, if given, adds a run's own overrides (and may wait)."""
    Path(args.work).mkdir(parents=True, exist_ok=True)
    for run in args.runs.split(","):
        out_dir = Path(args.work) / run
        lock = Path(args.work) / f"{run}.training"
        if (out_dir / "model").exists() or not claim(lock):
            continue
        overrides = {"device": args.device, "out_dir": str(out_dir), "data.data_dir": args.data_dir}
        if prepare is not None:
            prepare(run, overrides)
        if args.train_subset:  # a smoke run: the test-set score of each epoch shrinks with it
            overrides["data.train_subset"] = args.train_subset
            overrides["data.eval_subset"] = args.train_subset
            overrides["select.holdout"] = min(1000, args.train_subset // 4)
        started = time.perf_counter()
        train_from_file(f"{configs}/{run}.yaml", overrides=overrides, overwrite=True, progress=False)
        lock.unlink()
        print(f"{run}: trained in {time.perf_counter() - started:.0f} s", flush=True)


def trained(work: Path, run: str) -> bool:
    """Whether ``run`` has finished training under ``work``: its model exists and no process is training it (a
    multi-epoch run writes ``model/`` after every epoch)."""
    return (work / run / "model").exists() and not (work / f"{run}.training").exists()


def load_model(run: str, args) -> torch.nn.Module:
    """The run's selected checkpoint (held-out training images), in eval mode."""
    folder = Path(args.work) / run
    path = folder / "selected" if (folder / "selected").exists() else folder / "model"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run --phase train first")
    return checkpoint.load(path, device=args.device).eval()


def attack_list(model, args, eot: int | None = None) -> list:
    """FGSM, PGD10, APGD-CE (--apgd-steps) and MI-FGSM at eps 8/255 (``eot`` None: the decision rule's default)."""
    options = {} if eot is None else {"eot": eot}
    return [make_attack(name, model, EPS, **options, **({"steps": args.apgd_steps} if name == "apgd-ce" else {}))
            for name in ATTACKS]


def summary_of(result, per_sample: bool = True) -> dict:
    """The JSON record of an :class:`EvalResult` (with per-sample flags for the McNemar tests)."""
    return result.to_dict(per_sample=per_sample)


def pieces(run: str, model, data: dict, args) -> dict:
    """``{piece: job}`` for one model; each job returns a JSON-ready record."""
    x_full, y_full = data["x"][: args.n_full], data["y"][: args.n_full]
    x, y = data["x"][: args.n], data["y"][: args.n]
    command = data["command"]
    common = dict(progress=False, command=command, batch_size=args.eval_batch)
    jobs = {
        "full": lambda: summary_of(evaluate(model, x_full, y_full, attacks="fgsm", eps=EPS, **common)),
        "attacks": lambda: summary_of(evaluate(model, x, y, attacks=attack_list(model, args), eps=EPS, **common)),
        "no-eot": lambda: summary_of(evaluate(model, x, y, attacks=attack_list(model, args, eot=1), eps=EPS,
                                              **common)),
        "agcs": lambda: agcs_record(model, x_full, y_full, x, y),
        "audit": lambda: audit(model, data["x"][: args.n_audit], data["y"][: args.n_audit], EPS, progress=False,
                               command=command).to_dict(),
    }
    if run in args.strong_runs.split(","):
        x_s, y_s = data["x"][: args.n_strong], data["y"][: args.n_strong]
        jobs["strong"] = lambda: summary_of(evaluate(model, x_s, y_s, attacks=["snn-adaptive-quick", "autoattack"],
                                                     eps=EPS, cascade=True, **common))
    if run in args.sweep_runs.split(","):
        jobs["eot-sweep"] = lambda: {str(m): summary_of(evaluate(model, x, y, attacks="pgd10", eps=EPS, eot=m,
                                                                 **common), per_sample=False)
                                     for m in EOT_SWEEP}
    return jobs


def agcs_record(model, x_full, y_full, x, y) -> dict:
    """AGCS over the first --n-full images (its cosines kept for the histogram) and the PGD10 perturbation cosine."""
    gradients = agcs(model, x_full, y_full)
    perturbations = perturbation_cosine(model, x, y, "pgd10", eps=EPS)
    return {"agcs": gradients.mean, "agcs_cosines": gradients.cosines.tolist(),
            "perturbation_cosine": perturbations.mean, "n_agcs": x_full.shape[0], "n_perturbation": x.shape[0]}


ORDER = ("full", "attacks", "no-eot", "agcs", "strong", "eot-sweep", "audit")


def run_eval(args, command: str, order: tuple[str, ...] = ORDER, jobs_for=None, load=None,
             n_images: int | None = None) -> None:
    """Phase eval: every missing piece of every model of --runs, piece by piece across models (``order``); a model's
    jobs come from ``jobs_for(run, model, data, args)`` (default :func:`pieces`) on the first ``n_images`` test images
    (default: as many as --n-full, --n, --n-strong, --n-audit need), the model from ``load(run, args)`` (default
    :func:`load_model`). Each piece is seeded with 0 and claimed through a ``.running`` lock."""
    jobs_for, load = jobs_for or pieces, load or load_model
    test = load_dataset("fashion_mnist", "test", data_dir=args.data_dir)
    n = n_images or max(args.n_full, args.n, args.n_strong, args.n_audit)
    data = {"x": test.images[:n].float().div(255).to(args.device), "y": test.labels[:n].to(args.device),
            "command": command}
    for piece in order:
        for run in args.runs.split(","):
            path = Path(args.out) / run / f"{piece}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() or not trained(Path(args.work), run):  # done, or not trained yet
                continue
            model = load(run, args)
            jobs = jobs_for(run, model, data, args)
            if piece not in jobs or not claim(path.with_suffix(".running")):
                continue
            torch.manual_seed(0)
            started = time.perf_counter()
            record = jobs[piece]()
            record["time_s"] = time.perf_counter() - started
            path.write_text(json.dumps(record, indent=1) + "\n")
            path.with_suffix(".running").unlink()
            print(f"{run} {piece}: {record['time_s']:.0f} s", flush=True)


def reproduction_parser(description: str, name: str, runs: tuple[str, ...]) -> argparse.ArgumentParser:
    """The arguments every phased reproduction shares: phase, runs, work and output folders (``runs/<name>``,
    ``benchmarks/results/<name>``), device, data folder, training subset."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--phase", choices=("train", "eval", "report", "all"), default="all")
    parser.add_argument("--runs", default=",".join(runs))
    parser.add_argument("--work", default=f"runs/{name}")
    parser.add_argument("--out", default=f"benchmarks/results/{name}")
    parser.add_argument("--device", default="auto", type=device_name, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train-subset", type=int, default=None, help="override the configs' 16,000 images")
    return parser


def main() -> None:
    parser = reproduction_parser(__doc__.split("\n")[0], "randhet", RUNS)
    parser.add_argument("--n-full", type=int, default=1000)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--n-strong", type=int, default=32)
    parser.add_argument("--n-audit", type=int, default=16)
    parser.add_argument("--apgd-steps", type=int, default=50, help="APGD-CE iterations (the paper's code: 50)")
    parser.add_argument("--eval-batch", type=int, default=100)
    parser.add_argument("--strong-runs", default="snn_at,randhet_at,randhet_fwd_at")
    parser.add_argument("--sweep-runs", default="randhet_at,randhet_fwd_at")
    args = parser.parse_args()
    command = "python benchmarks/randhet_reproduce.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.phase in ("train", "all"):
        train_from_configs(args)
    if args.phase in ("eval", "all"):
        run_eval(args, command)
    if args.phase in ("report", "all"):
        from randhet_report import write_report

        write_report(Path(args.out), args, command)


if __name__ == "__main__":
    main()
