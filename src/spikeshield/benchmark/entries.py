"""The models on the board: every shipped defence with its paper's training, an equally trained plain baseline beside
it, the papers' claimed numbers, and the two presets' sizes (issue 22).

An :class:`Entry` names a config under ``configs/``; ``needs`` fills config keys with other entries' checkpoints (the
HoSNN's NDS comes from the clean LIF run, E-RSCT's teacher from the ANN, the purifier's classifier from SENet-18), so
the runner trains entries in dependency order. ``row=False`` entries (a teacher) are trained but not ranked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Claim:
    """A paper's published number for a defence: ``value`` (%) of ``metric`` on ``dataset``, and where it is."""

    metric: str
    value: float
    dataset: str
    source: str
    clean: float | None = None


@dataclass(frozen=True)
class Entry:
    """One model of the board: how to train it (``config`` + ``needs``), what it is and what its paper claims."""

    name: str
    config: str
    defence: str
    baseline: str | None = None  # the equally trained model without the defence (its row), None for baselines
    needs: dict[str, str] = field(default_factory=dict)  # config key -> entry whose checkpoint fills it
    claim: Claim | None = None
    checkpoint: str = "model"  # "selected" where the config picks an epoch on held-out images
    row: bool = True
    user: bool = False  # submitted with --add-checkpoint / --add-model / --add-nir


#: the shipped entries, in training order (an entry's needs come before it)
ENTRIES: tuple[Entry, ...] = (
    Entry("lif_clean", "configs/hosnn/lif_clean.yaml", "LIF SNN, clean training",
          claim=Claim("PGD7", 30.90, "fashion_mnist", "HoSNN paper, Table 1 (clean-trained SNN)", 92.92)),
    Entry("lif_fgsm", "configs/hosnn/lif_fgsm.yaml", "LIF SNN, FGSM AT",
          claim=Claim("PGD7", 62.92, "fashion_mnist", "HoSNN paper, Table 2 (FGSM-trained SNN)", 92.08)),
    Entry("hosnn_fgsm", "configs/hosnn/hosnn_fgsm.yaml", "HoSNN (TA-LIF + NDS), FGSM AT", baseline="lif_fgsm",
          needs={"hosnn.nds_from": "lif_clean"},
          claim=Claim("PGD7", 74.91, "fashion_mnist", "HoSNN paper, Tables 8-10 (FGSM-trained HoSNN)", 92.31)),
    Entry("snn_rat", "configs/randhet/snn_rat.yaml", "LIF SNN, RAT", checkpoint="selected",
          claim=Claim("MRA", 30.36, "cifar10", "RandHet-SNN paper (SNN + RAT, SEW-ResNet19)", 89.55)),
    Entry("randhet_rat", "configs/randhet/randhet_rat.yaml", "RandHet-SNN, RAT", baseline="snn_rat",
          checkpoint="selected",
          claim=Claim("MRA", 44.86, "cifar10", "RandHet-SNN paper (RandHet + RAT, SEW-ResNet19)", 90.25)),
    Entry("rsc_ann", "configs/rsc/ann.yaml", "ANN teacher of E-RSCT", checkpoint="selected", row=False),
    Entry("rsc_direct", "configs/rsc/direct.yaml", "VGG-5 SNN, direct coding", checkpoint="selected",
          claim=Claim("PGD", 0.03, "cifar10", "RSC-SNN paper (direct coding, VGG-5)", 90.69)),
    Entry("rsc_erst", "configs/rsc/rsc1-0.1_erst.yaml", "RSC-SNN (RSC-I 0.1) + E-RSCT", baseline="rsc_direct",
          needs={"distill.teacher": "rsc_ann"}, checkpoint="selected",
          claim=Claim("PGD", 39.98, "cifar10", "RSC-SNN paper (RSC-0.1 + E-RSCT, VGG-5)", 82.03)),
    Entry("senet18", "configs/purification/senet18.yaml", "SENet-18 MLF SNN"),
    Entry("purifier", "configs/purification/purifier.yaml", "Spiking purifier + SENet-18 MLF", baseline="senet18",
          needs={"purify.classifier": "senet18"},
          claim=Claim("AutoAttack", 71.48, "cifar10", "Purification paper (purifier + MLF SENet-18)", 89.05)),
)


@dataclass(frozen=True)
class Preset:
    """The sizes of a benchmark run: training overrides (applied to every shipped config; ``select.holdout`` only
    where the entry selects an epoch), images per piece, the ``snn-adaptive`` preset (``quick`` or ``standard``;
    ``""``: none, for tests of the machinery),
    the eps of the sweep, and ``attacks``: the protocol's attacks before ``snn-adaptive`` (None: AutoAttack,
    standard or rand; a smaller list only where the run says so, e.g. the test suite's), and ``budget``: on an SNN,
    run the members of the recorded budget plan instead, in its order (:data:`spikeshield.benchmark.budget.PLAN`,
    checked on the quick preset's models: the quick preset runs it, the full preset runs the full protocol)."""

    name: str
    train: dict[str, Any]
    n_eval: int
    n_sweep: int
    n_transfer: int
    n_audit: int
    n_certify: int
    n_tune: int
    adaptive: str
    eps_list: tuple[float, ...]
    certify_draws: tuple[int, int]
    attacks: tuple[str, ...] | None = None
    budget: bool = False  # run the recorded budget plan's members on SNNs (spikeshield.benchmark.budget.PLAN)


PRESETS: dict[str, Preset] = {
    "quick": Preset("quick", {"data.train_subset": 4000, "data.eval_subset": 2000, "optim.epochs": 1,
                              "select.holdout": 200}, n_eval=64,
                    n_sweep=32, n_transfer=64, n_audit=16, n_certify=16, n_tune=32, adaptive="quick",
                    eps_list=(2 / 255, 4 / 255, 8 / 255, 16 / 255), certify_draws=(32, 256), budget=True),
    "full": Preset("full", {}, n_eval=1000, n_sweep=256, n_transfer=500, n_audit=64, n_certify=200, n_tune=256,
                   adaptive="standard", eps_list=(1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255),
                   certify_draws=(100, 10000)),
}


def select(names: str | None, entries: tuple[Entry, ...] = ENTRIES) -> list[Entry]:
    """The entries named in ``names`` (comma list; None: all) plus every entry they need, in training order."""
    by_name = {e.name: e for e in entries}
    if names is None:
        return list(entries)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise ValueError(f"unknown benchmark model(s) {unknown}; choose from {', '.join(by_name)}")
    keep: set[str] = set()

    def add(name: str) -> None:
        if name not in keep:
            keep.add(name)
            for dependency in by_name[name].needs.values():
                add(dependency)
    for name in wanted:
        add(name)
    return [e for e in entries if e.name in keep]
