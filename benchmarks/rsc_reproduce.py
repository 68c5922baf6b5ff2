"""RSC-SNN reproduction on FashionMNIST (issue 18, item 5): direct, Poisson, RSC-I / RSC-II at several noise variances,
with and without E-RSCT and FGSM adversarial training (configs/rsc/), judged with EOT and the decision rule, against
certified bounds, beside the paper's CIFAR-10 numbers (METHODS 4).

Phase ``train`` trains the runs of configs/rsc/ under --work, the ANN teacher first (two processes can share the list:
each claims a run; a process that needs the teacher waits for it). Phase ``eval`` runs each model's pieces at eps
8/255, one resumable piece at a time (start it twice for two cores):

- ``full``: clean, FGSM and PGD7 (alpha 0.01, the paper's) with EOT (10 draws per gradient on a random model) and the
  decision rule on the first --n-full test images; F-QTE and P-QTE come with it;
- ``sweep``: FGSM and PGD7 (7 steps of 2.5 eps / 7) with EOT at eps 0, 8, 16 and 32/255 on the same images: at 8/255
  these small FashionMNIST networks keep most of their accuracy even clean-trained, so the noise-level trade-off shows
  at the larger budgets;
- ``no-eot``: FGSM and PGD7 with one draw per gradient (the paper's white-box protocol) and PGD7 with 2 draws (its
  EOT-PGD: torchattacks' default) on the same images;
- ``transfer``: PGD7 crafted on the independently trained direct SNN (configs/rsc/direct_seed1.yaml);
- ``certify``: CERTIFY over the coding noise (n0 100, --cert-n draws, alpha 0.001) on the first --n-cert;
- ``small-eps``: PGD7 (step 2.5 eps / 7) with EOT at 4/255 on the certified images: the L2 ball of radius
  4/255 sqrt(784) = 0.44 holds that L-inf ball, within reach of the certificate, so no image may be certified there and
  broken by the attack (a check of both);
- ``strong`` (--deep-runs): snn-adaptive-quick then AutoAttack (``rand`` on a random model) as one cascade on the
  first --n-strong;
- ``audit`` (--audit-runs, default --deep-runs): the gradient-obfuscation checklist on the first --n-audit.

Phase ``report`` writes reproduction.md, summary.json, noise.png (noise-level ablation, paper Figure 3) and
certified.png (certified accuracy against radius, with the empirical robust accuracy at the L-inf ball's radius).

    python benchmarks/rsc_reproduce.py --phase train        # start twice for two cores
    python benchmarks/rsc_reproduce.py --phase eval         # start twice for two cores
    python benchmarks/rsc_reproduce.py --phase report
    python benchmarks/rsc_reproduce.py --phase all --train-subset 256 --n-full 16 --n-strong 4 --n-cert 4 \\
        --cert-n 50 --n-audit 4 --work /tmp/rsc --out /tmp/rsc-out        # smoke
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from randhet_reproduce import load_model, reproduction_parser, run_eval, train_from_configs

from spikeshield.attacks import Transfer, make_attack
from spikeshield.evaluation import audit, certify, eps_sweep, evaluate

EPS = 8 / 255
TEACHER = "ann"
SOURCE = "direct_seed1"
RUNS = ("ann", "direct", SOURCE, "poisson", "rsc1-0.01", "rsc1-0.1", "rsc1-0.5", "rsc2-0.1", "rsc1-0.1_erst",
        "rsc1-0.1_at", "rsc1-0.1_erst_at")
ORDER = ("full", "sweep", "no-eot", "transfer", "certify", "strong", "audit", "small-eps")
SMALL_EPS = 4 / 255
SWEEP_EPS = (0, 8 / 255, 16 / 255, 32 / 255)
#: METHODS 4, paper Tables 3, 5 and 6 (CIFAR-10, VGG-5, no EOT): clean, FGSM, PGD7 (%), F-QTE, P-QTE
PAPER = {
    "ann": (90.95, 10.89, 0.12, 4.07, 3.64),
    "direct": (90.69, 6.19, 0.03, 3.88, 3.63),
    "poisson": (83.18, 31.20, 22.16, 4.58, 4.21),
    "rsc1-0.1": (80.29, 51.29, 37.28, 5.26, 4.70),
    "rsc1-0.5": (78.67, 66.61, 58.94, 5.81, 5.50),
    "rsc1-0.1_erst": (82.03, 54.52, 39.98, 5.46, 4.88),
    "rsc1-0.1_at": (80.27, 55.58, 43.59, None, None),
}


def pgd7(model, name: str = "pgd7", **options):
    """The paper's PGD: 7 steps of 0.01 at eps 8/255 (random start), reported as ``name``."""
    attack = make_attack("pgd7", model, EPS, alpha=0.01, steps=7, **options)
    attack.name = name
    return attack


def scaled_pgd7(model, eps: float):
    """PGD7 whose step grows with the budget (2.5 eps / 7), for the sweep: 0.01 cannot cross a ball of 32/255."""
    return make_attack("pgd7", model, eps, alpha=2.5 * eps / 7, steps=7)


def train_runs(args) -> None:
    """Phase train: the runs of --runs from configs/rsc/; runs distilled from the ANN wait until it is trained."""
    work = Path(args.work)

    def prepare(run: str, overrides: dict) -> None:
        if "erst" in run:
            overrides["distill.teacher"] = str(work / TEACHER / "selected")
            while not (work / TEACHER / "model").exists():  # the teacher is being trained by another process
                time.sleep(10)

    train_from_configs(args, "configs/rsc", prepare)


def pieces(run: str, model, data: dict, args) -> dict:
    """``{piece: job}`` for one model; each job returns a JSON-ready record."""
    x, y = data["x"][: args.n_full], data["y"][: args.n_full]
    common = dict(eps=EPS, progress=False, command=data["command"], batch_size=args.eval_batch)
    random = bool(getattr(model, "is_stochastic", False))
    jobs = {"full": lambda: evaluate(model, x, y, attacks=[make_attack("fgsm", model, EPS), pgd7(model)],
                                     **common).to_dict(per_sample=True)}
    jobs["sweep"] = lambda: eps_sweep(model, x, y, attacks=["fgsm", scaled_pgd7], eps_list=SWEEP_EPS,
                                      batch_size=args.eval_batch, progress=False, command=data["command"]).to_dict()
    if run == TEACHER:
        return jobs
    if random:
        jobs["no-eot"] = lambda: evaluate(
            model, x, y, attacks=[make_attack("fgsm", model, EPS, eot=1), pgd7(model, eot=1),
                                  pgd7(model, "eot2-pgd7", eot=2)],
            **common).to_dict(per_sample=True)
        jobs["certify"] = lambda: certify(model, data["x"][: args.n_cert], data["y"][: args.n_cert], n0=100,
                                          n=args.cert_n, alpha=0.001, progress=False,
                                          command=data["command"]).to_dict()
        jobs["small-eps"] = lambda: evaluate(model, data["x"][: args.n_cert], data["y"][: args.n_cert],
                                             attacks=[scaled_pgd7(model, SMALL_EPS)],
                                             **{**common, "eps": SMALL_EPS}).to_dict(per_sample=True)
    if run != SOURCE:
        source = load_model(SOURCE, args)
        jobs["transfer"] = lambda: evaluate(model, x, y, attacks=[Transfer(model, EPS, attack=pgd7(source))],
                                            **common).to_dict(per_sample=True)
    if run in (args.audit_runs or args.deep_runs).split(","):
        jobs["audit"] = lambda: audit(model, data["x"][: args.n_audit], data["y"][: args.n_audit], EPS,
                                      progress=False, command=data["command"]).to_dict()
    if run in args.deep_runs.split(","):
        x_s, y_s = data["x"][: args.n_strong], data["y"][: args.n_strong]
        jobs["strong"] = lambda: evaluate(model, x_s, y_s, attacks=["snn-adaptive-quick", "autoattack"],
                                          cascade=True, **common).to_dict(per_sample=True)
    return jobs


def main() -> None:
    parser = reproduction_parser(__doc__.split("\n")[0], "rsc", RUNS)
    parser.add_argument("--n-full", type=int, default=200)
    parser.add_argument("--n-strong", type=int, default=16)
    parser.add_argument("--n-cert", type=int, default=100)
    parser.add_argument("--cert-n", type=int, default=500, help="CERTIFY's estimation draws per image")
    parser.add_argument("--deep-runs", default="direct,poisson,rsc1-0.1,rsc1-0.1_erst",
                        help="runs that also get the strong cascade and the audit")
    parser.add_argument("--audit-runs", default=None, help="runs that get the audit (default: --deep-runs)")
    parser.add_argument("--n-audit", type=int, default=8)
    parser.add_argument("--eval-batch", type=int, default=100)
    args = parser.parse_args()
    command = "python benchmarks/rsc_reproduce.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.phase in ("train", "all"):
        train_runs(args)
    if args.phase in ("eval", "all"):
        n_images = max(args.n_full, args.n_strong, args.n_cert, args.n_audit)
        run_eval(args, command, ORDER, pieces, n_images=n_images)
    if args.phase in ("report", "all"):
        from rsc_report import write_report

        write_report(Path(args.out), args, command)


if __name__ == "__main__":
    main()
