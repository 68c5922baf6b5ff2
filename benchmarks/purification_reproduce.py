"""Image purification reproduction on FashionMNIST (issue 19, item 6): the MLF ablation, the classifier alone, with
the spiking purifier, with OLS, with both, and an adversarially trained baseline (configs/purification/), under the
paper's attacks and under the attacks it did not run, beside the paper's CIFAR-10 numbers (METHODS 3).

Phase ``train`` trains the runs of configs/purification/ under --work (two processes can share the list: each claims a
run; a purifier waits for its classifier). Phase ``eval`` runs each model's pieces, one resumable piece at a time
(start it twice for two cores); the pieces are listed in :func:`pieces`. Phase ``report`` writes reproduction.md,
summary.json and the plots.

    python benchmarks/purification_reproduce.py --phase train        # start twice for two cores
    python benchmarks/purification_reproduce.py --phase eval         # start twice for two cores
    python benchmarks/purification_reproduce.py --phase report
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from randhet_reproduce import load_model, reproduction_parser, run_eval, train_from_configs, trained

from spikeshield import checkpoint
from spikeshield.attacks import BIM, FGSM, MIFGSM, PGD, Transfer, make_attack
from spikeshield.evaluation import audit, eps_sweep, evaluate
from spikeshield.models import Pipeline

EPS = 8 / 255
CLASSIFIERS = ("senet18", "senet18_ols", "senet18_at", "resnet14_k1", "resnet14_k2", "resnet14_k3", "wrn16_8",
               "resnet20")
PURIFIERS = {"purifier": "senet18", "purifier_ols": "senet18_ols"}
RUNS = (*CLASSIFIERS, *PURIFIERS)
MOVED = "moved"
SOURCES = ("wrn16_8", "resnet20")
ORDER = ("ablation", "paper", "bpda", "stages", "strong", "transfer", "steps", "sweep", "restarts", "audit")
STEPS = (5, 10, 20, 30, 50)
SWEEP_EPS = (0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 12 / 255, 16 / 255)
STAGE_GRADIENTS = ("rga", "pdsg", "hart", "triangle", "ann")


def train_runs(args) -> None:
    """Phase train: the runs of --runs from configs/purification/; a purifier waits until its classifier is trained
    (by this or another process) and trains in front of it."""
    work = Path(args.work)

    def prepare(run: str, overrides: dict) -> None:
        if run in PURIFIERS:
            classifier = work / PURIFIERS[run] / "model"
            overrides["purify.classifier"] = str(classifier)
            while not classifier.exists():
                time.sleep(10)

    train_from_configs(args, "configs/purification", prepare)


def compose_moved(args) -> None:
    """The purifier trained in front of SENet-18, moved in front of the independently trained DS-ResNet-14 (K = 3),
    saved as one pipeline checkpoint (``<work>/moved/model``)."""
    work = Path(args.work)
    target = work / MOVED / "model"
    if target.exists() or not (trained(work, "purifier") and trained(work, "resnet14_k3")):
        return
    purifier = checkpoint.load(work / "purifier" / "model").stage("purifier")
    checkpoint.save(Pipeline([("purifier", purifier), ("classifier", checkpoint.load(work / "resnet14_k3" / "model"))],
                             frozen=["classifier"]), target, metadata={"composed_from": ["purifier", "resnet14_k3"]})


def paper_attacks(model, eps: float = EPS) -> list:
    """The paper's white-box attacks at ``eps`` through ``model``'s own backward (end to end for a pipeline): FGSM;
    I-FGSM, MI-FGSM and PGD of 7 steps of 2/255; CW (lr 0.01, 50 steps, c = 1, no binary search); APGD-CE (100
    steps)."""
    attacks = [FGSM(model, eps), BIM(model, eps, alpha=2 / 255, steps=7), MIFGSM(model, eps, alpha=2 / 255, steps=7),
               PGD(model, eps, alpha=2 / 255, steps=7), make_attack("cw", model, eps, binary_steps=1),
               make_attack("apgd-ce", model, eps)]
    for attack, name in zip(attacks, ("fgsm", "i-fgsm7", "mi-fgsm7", "pgd7", "cw", "apgd-ce"), strict=True):
        attack.name = name
    return attacks


def pgd(model, steps: int, eps: float = EPS, name: str | None = None):
    """PGD of ``steps`` steps of 2/255 (at most ``eps``) from a random start, named ``name`` (default pgd<steps>)."""
    attack = PGD(model, eps, alpha=min(2 / 255, eps), steps=steps)
    attack.name = name or f"pgd{steps}"
    return attack


def pieces(run: str, model, data: dict, args) -> dict:
    """``{piece: job}`` for one model; each job returns a JSON-ready record.

    - ``paper``: clean, Gaussian noise (sigma 20/255) and the paper's white-box attacks (:func:`paper_attacks`) on the
      first --n-full test images at 8/255, gradients end to end (through the spiking purifier's surrogates);
    - ``bpda`` (pipelines): the same gradient attacks with the purifier's backward replaced by the identity (BPDA; the
      purifier is deterministic, so EOT adds nothing) and BPDA-PGD20;
    - ``stages`` (pipelines): PGD20 (2/255) with each stage's backward chosen apart on the first --n-strong: the
      purifier through RGA, PDSG, HART, a triangle surrogate and its ANN twin (classifier own), and the classifier
      through the same with the purifier by BPDA;
    - ``strong`` (--deep-runs): snn-adaptive-quick then AutoAttack (standard) as one cascade on the first
      --n-strong;
    - ``restarts``: PGD 50 steps of 2/255 with 5 random restarts (worst case per image) on the first --n-strong;
    - ``steps``: PGD 5, 10, 20, 30, 50 steps of 2/255 at 8/255 (paper Fig. 5);
    - ``sweep``: FGSM and PGD7 at eps 1, 2, 4, 8, 12, 16/255 (paper Fig. 5);
    - ``transfer``: FGSM, PGD5, PGD10, PGD20 crafted on the independently trained WRN-16-8 and ResNet-20 SNNs;
    - ``audit`` (--deep-runs): the gradient-obfuscation checklist on the first --n-audit;
    - ``ablation`` (DS-ResNet-14, K = 1, 2, 3): FGSM and PGD (7 steps of 2.5 eps / 7) at eps 0.2, the paper's Table 1
      budget (MNIST there), and at 8/255.
    """
    x, y = data["x"][: args.n_full], data["y"][: args.n_full]
    x_s, y_s = data["x"][: args.n_strong], data["y"][: args.n_strong]
    common = dict(eps=EPS, progress=False, command=data["command"], batch_size=args.eval_batch)
    jobs: dict = {}
    if run.startswith("resnet14"):
        def ablation() -> dict:
            out = {}
            for eps in (0.2, EPS):
                attacks = [make_attack("fgsm", model, eps), PGD(model, eps, alpha=2.5 * eps / 7, steps=7)]
                out[f"{eps:.4f}"] = evaluate(model, x, y, attacks=attacks, **{**common, "eps": eps}).to_dict(
                    per_sample=True)
            return out
        jobs["ablation"] = ablation
    if run in SOURCES or run in ("resnet14_k1", "resnet14_k2"):
        return jobs
    pipeline = isinstance(model, Pipeline)
    jobs["paper"] = lambda: evaluate(model, x, y, attacks=[make_attack("gaussian", model, EPS),
                                                           *paper_attacks(model)], **common).to_dict(per_sample=True)
    if run == "resnet14_k3":  # the moved purifier's classifier alone, for comparison
        return jobs
    if pipeline:
        bpda = model.with_gradient("purifier", "bpda")
        jobs["bpda"] = lambda: evaluate(bpda, x, y, attacks=[*paper_attacks(bpda)[1:],
                                                             pgd(bpda, 20, name="bpda-pgd20")],
                                        **common).to_dict(per_sample=True)

        def stages() -> dict:
            attacks = []
            for grad in STAGE_GRADIENTS:
                for stage, view in (("purifier", model.with_gradient("purifier", grad)),
                                    ("classifier", bpda.with_gradient("classifier", grad))):
                    attack = pgd(view, 20, name=f"pgd20@{stage}:{grad}")
                    attacks.append(attack)
            return evaluate(model, x_s, y_s, attacks=attacks, **common).to_dict(per_sample=True)
        jobs["stages"] = stages
    if run in args.deep_runs.split(","):
        jobs["strong"] = lambda: evaluate(model, x_s, y_s, attacks=["snn-adaptive-quick", "autoattack"], cascade=True,
                                          **common).to_dict(per_sample=True)
        jobs["audit"] = lambda: audit(model, data["x"][: args.n_audit], data["y"][: args.n_audit], EPS,
                                      progress=False, command=data["command"]).to_dict()
    jobs["restarts"] = lambda: evaluate(model, x_s, y_s, attacks=[pgd(model, 50, name=f"pgd50-r{i}") for i in range(5)],
                                        **common).to_dict(per_sample=True)
    jobs["steps"] = lambda: evaluate(model, x, y, attacks=[pgd(model, k) for k in STEPS], **common).to_dict(
        per_sample=True)
    jobs["sweep"] = lambda: eps_sweep(model, x, y, attacks=["fgsm", lambda m, eps: pgd(m, 7, eps, "pgd7")],
                                      eps_list=SWEEP_EPS, batch_size=args.eval_batch, progress=False,
                                      command=data["command"]).to_dict()

    def transfer() -> dict:
        attacks = []
        for source_run in SOURCES:
            source = load_model(source_run, args)
            for name, attack in (("fgsm", make_attack("fgsm", source, EPS)), *((f"pgd{k}", pgd(source, k))
                                                                              for k in (5, 10, 20))):
                wrapped = Transfer(model, EPS, attack=attack)
                wrapped.name = f"{source_run}:{name}"
                attacks.append(wrapped)
        return evaluate(model, x, y, attacks=attacks, **common).to_dict(per_sample=True)
    jobs["transfer"] = transfer
    return jobs


def main() -> None:
    parser = reproduction_parser(__doc__.split("\n")[0], "purification", (*RUNS, MOVED))
    parser.add_argument("--n-full", type=int, default=64)
    parser.add_argument("--n-strong", type=int, default=16)
    parser.add_argument("--n-audit", type=int, default=8)
    parser.add_argument("--eval-batch", type=int, default=100)
    parser.add_argument("--deep-runs", default="senet18,purifier,purifier_ols",
                        help="runs that also get the strong cascade and the audit")
    parser.add_argument("--pieces", default=",".join(ORDER), help="the pieces to run, in this order")
    args = parser.parse_args()
    command = "python benchmarks/purification_reproduce.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.phase in ("train", "all"):
        args.runs = ",".join(r for r in args.runs.split(",") if r != MOVED)
        train_runs(args)
        compose_moved(args)
    if args.phase in ("eval", "all"):
        compose_moved(args)
        run_eval(args, command, tuple(args.pieces.split(",")), pieces,
                 n_images=max(args.n_full, args.n_strong, args.n_audit))
    if args.phase in ("report", "all"):
        from purification_report import write_report

        write_report(Path(args.out), args, command)


if __name__ == "__main__":
    main()
