"""Command line: ``spikeshield train | eval | check | audit | sweep | transfer | agcs | certify | compose | benchmark |
data | list``.

    spikeshield train --config configs/quick.yaml
    spikeshield check --checkpoint runs/quick/model --n-examples 500    # naive vs honest, the gap, the audit's flags
    spikeshield eval --checkpoint runs/quick/model --eps 8/255 --n-examples 1000   # autoattack + snn-adaptive
    spikeshield eval --checkpoint runs/quick/model --attacks fgsm,pgd7,apgd-ce@rga --no-clamp
    spikeshield audit --checkpoint runs/quick/model --eps 8/255 --n-examples 256
    spikeshield sweep --checkpoint runs/quick/model --attacks fgsm,pgd7 --eps-list 0,4/255,8/255
    spikeshield transfer --checkpoint runs/quick/model --source runs/other/model --attack pgd7
    spikeshield agcs --checkpoint runs/rsc/model
    spikeshield certify --checkpoint runs/rsc/model --n0 100 --n 1000 --alpha 0.001 --n-examples 100
    spikeshield compose --stage purifier=runs/purification/purifier/model@purifier \
        --stage classifier=runs/purification/resnet14_k3/model --out runs/purification/moved/model
    spikeshield benchmark --dataset fashion_mnist --preset quick --add-checkpoint runs/mine/model
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
                             overwrite=args.overwrite, stop_after_epochs=args.stop_after_epochs)
    if not result.completed:
        print(f"stopped after {len(result.history)} epochs: continue with --resume")
    print(f"checkpoint: {result.checkpoint}")


def _load_for_attack(args: argparse.Namespace):
    """The checkpoint's model, the first ``--n-examples`` images of ``--split`` in [0, 1], their labels, and the
    command line (shared by ``eval`` and ``audit``)."""
    from spikeshield.data import load_dataset

    model = _load_model(args)
    data = load_dataset(model.info.name, args.split, data_dir=args.data_dir)
    n = min(args.n_examples or len(data), len(data))
    x, y = data.gather(slice(0, n)).float().div_(255), data.labels[:n]
    command = "spikeshield " + " ".join(shlex.quote(a) for a in args.argv)
    return model, x, y, command


def _load_model(args: argparse.Namespace):
    """The model of ``--checkpoint``, ``--model MODULE:FACTORY`` (wrapped if foreign) or ``--nir FILE``."""
    from spikeshield import checkpoint

    if args.checkpoint:
        return checkpoint.load(args.checkpoint, device=args.device)
    from spikeshield.adapters.user import import_model

    options = dict(T=args.T, encoder=args.encoder, dataset=args.dataset)
    if args.nir:
        from spikeshield.adapters import from_nir

        return from_nir(args.nir, **options).to(args.device)
    low, _, high = args.input_range.partition(",")
    try:
        input_range = (float(low), float(high))
    except ValueError:
        raise ValueError(f"--input-range takes LOW,HIGH (e.g. -1,1); got {args.input_range!r}") from None
    return import_model(args.model, framework=args.framework, input_range=input_range, **options).to(args.device)


def _eval(args: argparse.Namespace) -> None:
    from spikeshield.evaluation import evaluate
    from spikeshield.report import print_table, write_report
    from spikeshield.validation import parse_eps

    eps = parse_eps(args.eps)
    model, x, y, command = _load_for_attack(args)
    attacks = _eval_attacks(args, model, eps)
    result = evaluate(model, x, y, attacks=attacks, eps=eps, batch_size=args.batch_size, seed=args.seed,
                      progress=not args.no_progress, eot=args.eot, grad=args.gradient, clamp=args.clamp,
                      cascade=args.cascade, state_file=args.state_file, command=command, score_draws=args.score_draws,
                      context=args.context)
    if not args.context.is_main:  # every rank holds the merged result; rank 0 writes it
        return
    print_table(result)
    out = _out_dir(args)
    result.save_json(out / "eval.json")
    write_report(result, out / "eval.md")
    print(f"wrote {out / 'eval.json'} and {out / 'eval.md'}")


def _eval_attacks(args: argparse.Namespace, model, eps: float, names: str | None = None) -> list:
    """``names`` (default ``--attacks``) as evaluate takes it; by default AutoAttack plus, for an SNN,
    ``snn-adaptive``. An ``snn-adaptive`` suite is tuned on the last ``--tune-examples`` training images (never the
    test set)."""
    from spikeshield.attacks.adaptive import SNNAdaptive
    from spikeshield.attacks.registry import suite_version
    from spikeshield.data import load_dataset
    from spikeshield.neurons.base import has_spiking_neurons

    names = names or args.attacks or ("autoattack,snn-adaptive" if has_spiking_neurons(model) else "autoattack")
    attacks: list = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if not name.lower().replace("_", "-").startswith("snn-adaptive"):
            attacks.append(name)
            continue
        tune_on = None
        if args.tune_examples:
            import torch

            torch.manual_seed(args.seed)  # the tuning's random starts: the same in every process
            train = load_dataset(model.info.name, "train", data_dir=args.data_dir)
            tail = slice(len(train) - min(args.tune_examples, len(train)), len(train))
            tune_on = (train.gather(tail).float().div_(255).to(args.device), train.labels[tail].to(args.device))
        attacks.append(SNNAdaptive(model, eps, preset=suite_version(name) or "standard", tune_on=tune_on,
                                   eot=getattr(args, "eot", None), clamp=getattr(args, "clamp", True),
                                   score_draws=getattr(args, "score_draws", None)))
    return attacks


def _audit(args: argparse.Namespace) -> None:
    from spikeshield.evaluation import audit
    from spikeshield.validation import parse_eps

    eps = parse_eps(args.eps)
    blackbox = None if args.blackbox.strip().lower() in ("none", "") else args.blackbox
    optional = {k: v for k, v in (("n_random", args.n_random), ("n_queries", args.n_queries)) if v is not None}
    model, x, y, command = _load_for_attack(args)
    report = audit(model, x, y, eps=eps, attacks=args.attacks, blackbox=blackbox, eot=args.eot, seed=args.seed,
                   progress=not args.no_progress, batch_size=args.batch_size, command=command,
                   score_draws=args.score_draws, **optional)
    print(report.table(), end="")
    print(f"flags raised: {', '.join(sorted(report.flags)) or 'none'}")
    out = _out_dir(args)
    report.save_json(out / "audit.json")
    report.save_markdown(out / "audit.md")
    print(f"wrote {out / 'audit.json'} and {out / 'audit.md'}")


def _check(args: argparse.Namespace) -> None:
    """Naive against honest evaluation on the same images, the gap, and the audit's flags."""
    from spikeshield.evaluation import audit, evaluate
    from spikeshield.fileio import atomic_write_text
    from spikeshield.report import write_report
    from spikeshield.validation import parse_eps

    eps = parse_eps(args.eps)
    model, x, y, command = _load_for_attack(args)
    common = dict(eps=eps, batch_size=args.batch_size, seed=args.seed, progress=not args.no_progress,
                  command=command)
    naive = evaluate(model, x, y, attacks=args.naive, cascade=False, **common)
    honest = evaluate(model, x, y, attacks=_eval_attacks(args, model, eps, args.honest), cascade=True, **common)
    n_audit = min(args.n_audit, x.shape[0])
    report = audit(model, x[:n_audit], y[:n_audit], eps=eps, seed=args.seed, progress=not args.no_progress,
                   batch_size=args.batch_size, command=command)
    out = _out_dir(args)
    naive.save_json(out / "naive.json")
    honest.save_json(out / "honest.json")
    report.save_json(out / "audit.json")
    write_report(honest, out / "honest.md")
    text = check_summary(naive, honest, report)
    atomic_write_text(out / "check.md", text)
    print(text, end="")
    print(f"wrote {out / 'check.md'}, naive.json, honest.json (+ honest.md) and audit.json")


def check_summary(naive, honest, report) -> str:
    """The side-by-side text of ``spikeshield check``: clean and worst-case accuracy under the naive and the honest
    attacks, the gap, and the audit's flags with their one-line reasons."""
    width = 44

    def row(label: str, a: str, b: str) -> str:
        return f"{label:<14}{a:>{width}}{b:>{width}}\n"

    naive_name = f"naive: {', '.join(naive.robust_acc)} (own surrogate)"
    honest_name = f"honest: {', '.join(honest.robust_acc)}"
    gap = 100 * (honest.worst_case_acc - naive.worst_case_acc)
    lines = [f"Robustness of {_label(honest)} at eps {honest.eps * 255:.3g}/255 on {honest.n_examples} images\n\n",
             row("", naive_name[:width - 2], honest_name[:width - 2]),
             row("clean (%)", f"{100 * naive.clean_acc:.1f}", f"{100 * honest.clean_acc:.1f}"),
             row("worst case (%)", f"{100 * naive.worst_case_acc:.1f}", f"{100 * honest.worst_case_acc:.1f}"),
             f"\ngap: {gap:+.1f} points: the naive evaluation overstates robust accuracy by {-gap:.1f} points.\n"
             if gap < 0 else f"\ngap: {gap:+.1f} points.\n",
             "honest members (cumulative, %): "
             + ", ".join(f"{k} {100 * v:.1f}" for k, v in honest.robust_acc.items()) + "\n",
             f"\naudit on {report.n_examples} images: flags raised: {', '.join(sorted(report.flags)) or 'none'}\n"]
    lines += [f"  - {flag}: {report.evidence[flag]['reason']}\n" for flag in sorted(report.flags)]
    return "".join(lines)


def _label(result) -> str:
    from spikeshield.report.tables import model_label

    return model_label(result)


def _out_dir(args: argparse.Namespace) -> Path:
    """``--out``, or the checkpoint's parent folder (``runs/byo/<name>`` for --model / --nir); created if missing."""
    if args.out:
        out = Path(args.out)
    elif getattr(args, "checkpoint", None):
        out = Path(args.checkpoint).parent
    else:
        out = Path("runs") / "byo" / Path((args.model or args.nir).replace(":", "-")).stem
    out.mkdir(parents=True, exist_ok=True)
    return out


def _sweep(args: argparse.Namespace) -> None:
    from spikeshield.evaluation import eps_sweep
    from spikeshield.validation import parse_eps

    eps_list = [parse_eps(item.strip(), "--eps-list") for item in args.eps_list.split(",") if item.strip()]
    model, x, y, command = _load_for_attack(args)
    sweep = eps_sweep(model, x, y, attacks=args.attacks, eps_list=eps_list, batch_size=args.batch_size,
                      seed=args.seed, progress=not args.no_progress, eot=args.eot, grad=args.gradient,
                      clamp=args.clamp, score_draws=args.score_draws, command=command)
    out = _out_dir(args)
    sweep.save_json(out / "sweep.json")
    sweep.plot(out / "sweep.png")
    for name, accs in sweep.robust_acc.items():
        print(f"{name:12} " + "  ".join(f"{e:g}: {100 * a:.2f}%" for e, a in zip(sweep.eta, accs, strict=True))
              + f"   QTE {sweep.qte(name):.3f}")
    print(f"wrote {out / 'sweep.json'} and {out / 'sweep.png'}")


def _transfer(args: argparse.Namespace) -> None:
    import json

    from spikeshield import checkpoint
    from spikeshield.evaluation import transferability
    from spikeshield.fileio import atomic_write_text
    from spikeshield.validation import parse_eps

    eps = parse_eps(args.eps)
    target, x, y, command = _load_for_attack(args)
    source = checkpoint.load(args.source, device=args.device).eval()
    result = transferability(source, target, x, y, attack=args.attack, eps=eps, batch_size=args.batch_size,
                             seed=args.seed)
    rate = "n/a" if result.transfer_rate is None else f"{100 * result.transfer_rate:.2f}%"
    print(f"source: clean {100 * result.source_clean_acc:.2f}%, white-box {args.attack} "
          f"{100 * result.source_robust_acc:.2f}%; target: clean {100 * result.target_clean_acc:.2f}%, transferred "
          f"{100 * result.target_robust_acc:.2f}%; transfer rate {rate} of {result.n_transferable}")
    out = _out_dir(args)
    atomic_write_text(out / "transfer.json", json.dumps({**result.to_dict(), "command": command}, indent=2) + "\n")
    print(f"wrote {out / 'transfer.json'}")


def _agcs(args: argparse.Namespace) -> None:
    import json

    from spikeshield.evaluation import agcs
    from spikeshield.fileio import atomic_write_text
    from spikeshield.report import plot_agcs_histogram

    model, x, y, command = _load_for_attack(args)
    if not getattr(model, "is_stochastic", False):
        print("note: the model is deterministic, so every cosine is 1 (AGCS is for stochastic models)")
    result = agcs(model, x, y, batch_size=args.batch_size)
    out = _out_dir(args)
    atomic_write_text(out / "agcs.json", json.dumps({**result.to_dict(), "command": command}, indent=2) + "\n")
    plot_agcs_histogram(result, out / "agcs.png")
    print(f"AGCS {result.mean:.4f} over {result.n} images; wrote {out / 'agcs.json'} and {out / 'agcs.png'}")


def _certify(args: argparse.Namespace) -> None:
    from spikeshield.evaluation import certify

    model, x, y, command = _load_for_attack(args)
    out = _out_dir(args)
    state = args.state_file or out / "certify-state.json"
    result = certify(model.eval(), x, y, n0=args.n0, n=args.n, alpha=args.alpha, batch_size=args.batch_size,
                     seed=args.seed, progress=not args.no_progress, state_file=state, command=command,
                     context=args.context)
    if not args.context.is_main:  # every rank holds the merged result; rank 0 writes it
        return
    result.save_json(out / "certify.json")
    result.plot(out / "certify.png")
    if not args.state_file:  # finished: a later run with other settings starts clean
        state.unlink(missing_ok=True)
    unit = f"{result.norm.upper()} radius (pixels)"
    radii = [float(r) for r in args.radii.split(",")] if args.radii else [0.0, *sorted(set(result.radii))[-3:]]
    print(f"{result.coding} coding, {result.n_examples} images, abstained on {100 * result.abstain_rate:.1f}%")
    for radius, acc in result.curve(radii):
        print(f"  {unit} >= {radius:.4g}: certified accuracy {100 * acc:.2f}%")
    print(f"wrote {out / 'certify.json'} and {out / 'certify.png'}")


def _compose(args: argparse.Namespace) -> None:
    from spikeshield import checkpoint
    from spikeshield.models import Pipeline

    stages = []
    for item in args.stage:
        name, sep, source = item.partition("=")
        path, _, inner = source.partition("@")
        if not (sep and name and path):
            raise ValueError(f"--stage takes NAME=CHECKPOINT or NAME=CHECKPOINT@STAGE; got {item!r}")
        model = checkpoint.load(path, device=args.device)
        if inner:
            if not isinstance(model, Pipeline):
                raise ValueError(f"{path} is not a pipeline: it has no stage {inner!r}")
            model = model.stage(inner)
        stages.append((name, model))
    pipeline = Pipeline(stages, frozen=[name for name, _ in stages])
    checkpoint.save(pipeline, args.out, metadata={"composed_from": args.stage})
    print(f"pipeline {' -> '.join(name for name, _ in stages)} saved to {args.out}")


def _benchmark(args: argparse.Namespace) -> None:
    from spikeshield.benchmark import run_benchmark

    low, _, high = args.input_range.partition(",")
    options = dict(T=args.T, encoder=args.encoder, dataset=args.dataset, framework=args.framework,
                   input_range=(float(low), float(high)))
    command = "spikeshield " + " ".join(shlex.quote(a) for a in args.argv)
    paths = run_benchmark(args.dataset, args.preset, args.models, out=args.out, work=args.work,
                          add_checkpoints=args.add_checkpoint or (), add_models=args.add_model or (),
                          add_nirs=args.add_nir or (), model_options=options, data_dir=args.data_dir,
                          device=args.device, progress=not args.no_progress, command=command,
                          budget=False if args.full_protocol else None)
    print(paths["md"].read_text(encoding="utf-8"))
    print(f"wrote {paths['json']}, {paths['md']} and {paths['html']}")


def _data(args: argparse.Namespace) -> None:
    from spikeshield.data import load_dataset

    for split in ("train", "test"):
        data = load_dataset(args.dataset, split, data_dir=args.data_dir)
        print(f"{args.dataset} {split}: {len(data)} images, {data.info.channels}x{data.info.size}x{data.info.size}, "
              f"{data.info.num_classes} classes")


def _list(_: argparse.Namespace) -> None:
    from spikeshield.attacks import ATTACKS
    from spikeshield.attacks.registry import SUITES
    from spikeshield.data import DATASETS
    from spikeshield.encoding import ENCODERS
    from spikeshield.evaluation.audit import CHECKS
    from spikeshield.models import model_names
    from spikeshield.neurons import BACKWARD_MODES, NEURONS, SURROGATES
    from spikeshield.neurons.gradients import MODEL_GRADIENTS

    for title, names in [("models", model_names()), ("neurons", NEURONS), ("surrogates", SURROGATES),
                         ("gradients", [*SURROGATES, *BACKWARD_MODES, *MODEL_GRADIENTS]), ("encoders", ENCODERS),
                         ("attacks", ATTACKS), ("suites", SUITES), ("datasets", DATASETS), ("audit", CHECKS)]:
        print(f"{title:11} {', '.join(sorted(names))}")


#: commands that shard their examples over the processes of torchrun (``torchrun ... -m spikeshield eval``)
SHARDED = ("eval", "certify")


def _context(args: argparse.Namespace):
    """This process's :class:`~spikeshield.distributed.Context`: its rank and device under torchrun (``eval`` and
    ``certify`` only; ``train`` joins in the trainer), else one process on ``--device``."""
    from spikeshield import distributed

    if distributed.launched() and args.command not in SHARDED:
        raise ValueError(f"spikeshield {args.command} does not shard over processes; run it without torchrun "
                         f"(torchrun runs: train, {', '.join(SHARDED)})")
    return distributed.start(args.device)


def build_parser() -> argparse.ArgumentParser:
    """The ``spikeshield`` argument parser."""
    parser = argparse.ArgumentParser(prog="spikeshield", description="Train robust SNNs and evaluate them honestly.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("--config", required=True, help="YAML file (see configs/ and docs/training.md)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start over even if out_dir holds a run")
    p.add_argument("--stop-after-epochs", type=int, default=None, metavar="N",
                   help="return after N epochs of this call (checkpoint written), to split a run into time slices")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. optim.epochs=3")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint under attacks")
    _add_model_and_data(p, n_examples=None, writes="eval.json and eval.md")
    p.add_argument("--attacks", default=None,
                   help="comma list of attack names, name@gradient (pgd7@rga) or suites: autoattack, "
                        "autoattack-standard, autoattack-rand, snn-adaptive, snn-adaptive-quick (spikeshield list). "
                        "Default: autoattack,snn-adaptive for an SNN, autoattack otherwise")
    p.add_argument("--tune-examples", type=int, default=256,
                   help="training images (the split's last ones) that snn-adaptive tunes HART's and ASSG's "
                        "parameters on; 0: no tuning (defaults)")
    p.add_argument("--clamp", action=argparse.BooleanOptionalAction, default=True,
                   help="keep adversarial images in [0, 1] (the standard threat model); --no-clamp is the "
                        "non-standard unclamped one of some published SNN code, labelled in the report")
    p.add_argument("--eps", default="8/255", help="L-inf budget in pixel units, e.g. 8/255")
    _add_draws(p)
    p.add_argument("--gradient", default=None,
                   help="the attacker's backward pass for names without @: a surrogate (triangle), bptr, rga, ann")
    p.add_argument("--cascade", action=argparse.BooleanOptionalAction, default=None,
                   help="run each attack only on points still robust (default: when a suite is among the attacks)")
    p.add_argument("--state-file", default=None,
                   help="JSON progress file: an interrupted evaluation resumes from it with the same result")
    p.set_defaults(func=_eval)

    p = sub.add_parser("check", help="naive vs honest robustness side by side, the gap and the audit's flags")
    _add_model_and_data(p, n_examples=500, writes="check.md, naive.json, honest.json and audit.json")
    p.add_argument("--eps", default="8/255", help="L-inf budget in pixel units, e.g. 8/255")
    p.add_argument("--naive", default="fgsm,pgd7",
                   help="the naive attacks, through the model's own surrogate (default fgsm,pgd7)")
    p.add_argument("--honest", default="snn-adaptive-quick",
                   help="the honest protocol, run as a cascade (default snn-adaptive-quick; e.g. "
                        "autoattack,snn-adaptive for the full default of spikeshield eval)")
    p.add_argument("--tune-examples", type=int, default=128,
                   help="training images snn-adaptive tunes ASSG's and HART's parameters on (0: defaults)")
    p.add_argument("--n-audit", type=int, default=64, help="images the audit runs on (the first of the N)")
    p.set_defaults(func=_check)

    p = sub.add_parser("audit", help="check a checkpoint for gradient obfuscation (docs/flags.md)")
    _add_model_and_data(p, n_examples=256, writes="audit.json and audit.md")
    p.add_argument("--eps", default="8/255", help="L-inf budget in pixel units, e.g. 8/255")
    p.add_argument("--attacks", default="fgsm,pgd20",
                   help="white-box attacks at eps: a single-step and an iterative one (spikeshield list)")
    p.add_argument("--blackbox", default="square", help="black-box attack name (square, gaussian) or none")
    p.add_argument("--n-queries", type=int, default=None, help="query budget of the black-box attack (default 1000)")
    p.add_argument("--n-random", type=int, default=None,
                   help="random points per image in the eps-ball (default 32; 0 skips the check)")
    _add_draws(p)
    p.set_defaults(func=_audit)

    p = sub.add_parser("sweep", help="robust accuracy over eps budgets, with a plot and QTE")
    _add_model_and_data(p, n_examples=1000, writes="sweep.json and sweep.png")
    p.add_argument("--attacks", default="fgsm,pgd7", help="comma list of attack names (spikeshield list)")
    p.add_argument("--eps-list", default="0,2/255,4/255,8/255,16/255", help="comma list of budgets")
    _add_draws(p)
    p.add_argument("--gradient", default=None,
                   help="the attacker's backward pass for names without @: a surrogate (triangle), bptr, rga, ann")
    p.add_argument("--clamp", action=argparse.BooleanOptionalAction, default=True,
                   help="keep adversarial images in [0, 1] (standard); --no-clamp: the non-standard unclamped one")
    p.set_defaults(func=_sweep)

    p = sub.add_parser("transfer", help="transferability: craft on --source, score on --checkpoint (and source)")
    _add_model_and_data(p, n_examples=1000, writes="transfer.json")
    p.add_argument("--source", required=True, help="checkpoint directory of the model the attack is crafted on")
    p.add_argument("--attack", default="pgd7", help="attack name run on the source (spikeshield list)")
    p.add_argument("--eps", default="8/255", help="L-inf budget in pixel units, e.g. 8/255")
    p.set_defaults(func=_transfer)

    p = sub.add_parser("agcs", help="gradient agreement between random draws of a stochastic model, with histogram")
    _add_model_and_data(p, n_examples=1000, writes="agcs.json and agcs.png")
    p.set_defaults(func=_agcs)

    p = sub.add_parser("certify", help="certified accuracy of a model coded with smoothing noise (rsc1, rsc2, poisson)")
    _add_model_and_data(p, n_examples=100, writes="certify.json, certify.png and certify-state.json")
    p.set_defaults(batch_size=500)
    p.add_argument("--n0", type=int, default=100, help="draws that pick the class (Cohen et al.: 100)")
    p.add_argument("--n", "--n-draws", dest="n", type=int, default=1000,
                   help="draws that bound its probability (Cohen et al.: 100000); spell it --n-draws under torchrun, "
                        "whose own parser takes --n for one of its options")
    p.add_argument("--alpha", type=float, default=0.001, help="failure probability of each certificate")
    p.add_argument("--radii", default=None, help="comma list of radii to print certified accuracy at")
    p.add_argument("--state-file", default=None,
                   help="JSON progress file (default: certify-state.json in --out, removed when done); an "
                        "interrupted run resumes from it")
    p.set_defaults(func=_certify)

    p = sub.add_parser("compose", help="save stages from checkpoints as one pipeline (e.g. a purifier moved in front "
                                       "of another classifier)")
    p.add_argument("--stage", action="append", required=True, metavar="NAME=CHECKPOINT[@STAGE]",
                   help="a stage, in order (the last is the classifier); @STAGE takes one stage of a pipeline")
    p.add_argument("--out", required=True, help="the pipeline's checkpoint directory")
    _add_device(p)
    p.set_defaults(func=_compose)

    p = sub.add_parser("benchmark", help="train or load every shipped defence and its baseline, evaluate all under one "
                                         "protocol, write the leaderboard (docs/leaderboard.md)")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--preset", default="quick", choices=["quick", "full"],
                   help="quick: small training runs and 64 images per piece; full: the configs as they are")
    p.add_argument("--models", default=None, help="comma list of shipped entries (default: all)")
    p.add_argument("--full-protocol", action="store_true",
                   help="AutoAttack and snn-adaptive in full, where the preset runs the recorded budget plan")
    p.add_argument("--add-checkpoint", action="append", metavar="DIR",
                   help="a checkpoint of yours, evaluated under the same protocol (row marked user-submitted)")
    p.add_argument("--add-model", action="append", metavar="MODULE:FACTORY",
                   help="a model of yours (SpikingJelly / snnTorch / Norse networks are wrapped)")
    p.add_argument("--add-nir", action="append", metavar="FILE", help="a NIR graph of yours")
    p.add_argument("--framework", default="auto", choices=["auto", "spikingjelly", "snntorch", "norse"])
    p.add_argument("--T", type=int, default=8, help="time steps of --add-model / --add-nir networks")
    p.add_argument("--encoder", default="direct", help="input coding of --add-model / --add-nir networks")
    p.add_argument("--input-range", default="0,1", help="pixel range an --add-model network was trained on")
    p.add_argument("--out", default="benchmarks/results/leaderboard", help="the leaderboard's folder (cells cached)")
    p.add_argument("--work", default="runs/leaderboard", help="where the shipped models are trained")
    p.add_argument("--data-dir", default=None)
    _add_device(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_benchmark)

    p = sub.add_parser("data", help="locate (or download) a dataset and print what was found")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=_data)

    p = sub.add_parser("list", help="list models, neurons, surrogates, encoders, attacks, datasets and audit checks")
    p.set_defaults(func=_list)
    return parser


def _add_draws(p: argparse.ArgumentParser) -> None:
    """``--eot`` and ``--score-draws``: how many random draws gradients and verdicts average (stochastic models)."""
    p.add_argument("--eot", type=int, default=None, help="EOT draws per gradient (default: 1, or 10 for stochastic "
                                                         "models)")
    p.add_argument("--score-draws", type=int, default=None,
                   help="draws behind each verdict, judged by majority vote (default: 1, or 10 for stochastic models)")


def _add_device(p: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda|cuda:N`` (default auto: CUDA when there is a GPU)."""
    p.add_argument("--device", default="auto",
                   help="auto (CUDA when there is a GPU, else the CPU), cpu, cuda or cuda:N; under torchrun each "
                        "process takes cuda:LOCAL_RANK")


def _add_model_and_data(p: argparse.ArgumentParser, n_examples: int | None, writes: str) -> None:
    """The arguments every command on a model shares: the model (a checkpoint, a user's model, a NIR file), the
    images, the output folder."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint directory written by training")
    source.add_argument("--model", metavar="MODULE:FACTORY",
                        help="a user's model: module.path:factory or file.py:factory giving an nn.Module; a "
                             "SpikingJelly / snnTorch / Norse network is wrapped (docs/byo-model.md)")
    source.add_argument("--nir", metavar="FILE", help="a NIR graph file, imported with spikeshield.adapters.from_nir")
    p.add_argument("--framework", default="auto", choices=["auto", "spikingjelly", "snntorch", "norse"],
                   help="framework of a --model network (default: detected)")
    p.add_argument("--T", type=int, default=8, help="time steps of a --model or --nir network (default 8)")
    p.add_argument("--encoder", default="direct", help="input coding of a --model or --nir network (default direct)")
    p.add_argument("--input-range", default="0,1",
                   help="pixel range a --model network was trained on, LOW,HIGH (default 0,1)")
    p.add_argument("--dataset", default="fashion_mnist", help="dataset of a --model or --nir network")
    default = "all" if n_examples is None else n_examples
    p.add_argument("--n-examples", type=int, default=n_examples, help=f"first N images of the split ({default})")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--data-dir", default=None, help="directory holding the dataset files")
    _add_device(p)
    p.add_argument("--out", default=None, help=f"directory for {writes} (default: next to the checkpoint)")
    p.add_argument("--no-progress", action="store_true")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``spikeshield`` console script; bad input ends with a one-line error and exit code 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        if hasattr(args, "device"):
            args.context = _context(args)
            args.device = str(args.context.device)
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
