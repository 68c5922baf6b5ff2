"""One result record per evaluated model (RobustBench-like JSON, numbers stored as numbers)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from spikeshield.fileio import atomic_write_text

#: version of the JSON layout written by :meth:`EvalResult.to_dict`
SCHEMA = "spikeshield.eval/1"

#: ``threat_model`` of a result by the attacks' ``clamp``: the standard one, or the unclamped one of some published
#: SNN code (METHODS 1), which reports label as non-standard
THREAT_MODELS = {True: "clamped", False: "unclamped"}


class JsonRecord:
    """``save_json`` / ``load_json`` for a record class with ``to_dict(**options)`` and ``from_dict(data)``."""

    def save_json(self, path: str | os.PathLike, **options: Any) -> Path:
        """Write ``to_dict(**options)`` as JSON atomically (temporary file + ``os.replace``); return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(self.to_dict(**options), indent=2, allow_nan=False) + "\n")
        return path

    @classmethod
    def load_json(cls, path: str | os.PathLike):
        """Read a record written by :meth:`save_json`."""
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


def provenance(device: Any) -> dict[str, Any]:
    """The fields every record stores about where it was computed: versions, device, git commit, UTC date."""
    import spikeshield  # lazy: the package imports this module

    return dict(spikeshield_version=getattr(spikeshield, "__version__", "unknown"), torch_version=torch.__version__,
                device=str(device), git_commit=git_commit(),
                date=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def git_commit() -> str | None:
    """Best effort: the commit of the spikeshield source tree (``+dirty`` if it has changes), or None."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head or None


@dataclass
class EvalResult(JsonRecord):
    """The outcome of :func:`spikeshield.evaluation.evaluate`.

    Accuracies are fractions in [0, 1]. ``robust_acc[a]`` counts a sample as robust to attack ``a`` when it is
    classified correctly clean *and* after the attack (for a deterministic model it never exceeds ``clean_acc``; for
    a random one it is the verdict on the stronger of the two points, see below); ``adv_acc[a]`` is the plain
    accuracy on the adversarial images (it may exceed ``clean_acc`` for a weak or obfuscated attack, which the audit
    uses). ``worst_case_acc`` counts samples correct clean and under every attack; ``mra`` is the minimum of
    ``robust_acc`` over attacks (None without attacks). ``number_forward_passes`` counts images sent through the model
    (``"clean"``, each attack and ``"total"``); ``time_s`` the seconds per attack and ``"total"``. With ``cascade`` each
    attack ran only on the points still robust after the attacks before it, so ``robust_acc[a]`` (and ``adv_acc[a]``) is
    the accuracy left after ``a`` and all earlier attacks, and ``mra`` equals ``worst_case_acc``. ``broken_by[a]``
    counts the clean-correct samples that ``a`` fooled first (in the attack order): for an ensemble, which variant broke
    how many. ``threat_model`` is ``"clamped"`` (standard: ``x_adv`` in [0, 1]), ``"unclamped"`` (non-standard, METHODS
    1) or ``"mixed"``. ``suites`` holds the settings of each suite whose members ran (e.g. the tuned parameters of
    ``snn-adaptive``). ``per_sample`` holds the per-sample verdicts of each column (``"clean"``, each attack's
    robust verdict and ``"worst_case"``); it is kept out of the JSON unless asked for.

    Verdicts follow the decision rule of :mod:`spikeshield.decision`: each is the majority over ``score_draws``
    draws of the model (1 for a deterministic model; ``stochastic`` says whether the model was declared or observed
    random). An attack's column judges the stronger of the clean image and the attack's point (in a cascade the
    strongest point so far) and ``worst_case_acc`` each sample's strongest point of all, on a random model with
    fresh draws, so the worst case is not a minimum over noisy verdicts. ``expected_acc`` gives, for ``"clean"``,
    each attack and ``"worst_case"``, the expected (per-draw) accuracy ``acc`` at the judged points with its 95%
    interval ``[low, high]`` (:func:`~spikeshield.decision.expected_accuracy`); ``per_sample_fraction`` holds each
    point's fraction of correct draws (kept out of the JSON with ``per_sample``). ``qte`` holds, at eps = 8/255 only,
    each attack's two-point QTE between the clean point and its robust accuracy (RSC-SNN's F-QTE under ``"fgsm"``,
    P-QTE under the PGD attack's name; :func:`~spikeshield.evaluation.qte`); empty at other budgets, where the
    paper's numbers are not comparable.
    """

    model: dict[str, Any]
    dataset: str
    eps: float
    clean_acc: float
    robust_acc: dict[str, float]
    adv_acc: dict[str, float]
    worst_case_acc: float
    mra: float | None
    n_examples: int
    seeds: list[int]
    number_forward_passes: dict[str, int]
    attacks: dict[str, dict[str, Any]]
    time_s: dict[str, float]
    flags: list[Any] = field(default_factory=list)
    spikeshield_version: str = ""
    torch_version: str = ""
    device: str = "cpu"
    git_commit: str | None = None
    date: str = ""
    command: str | None = None
    cascade: bool = False
    broken_by: dict[str, int] = field(default_factory=dict)
    threat_model: str = "clamped"
    suites: dict[str, dict[str, Any]] = field(default_factory=dict)
    stochastic: bool = False
    score_draws: int = 1
    expected_acc: dict[str, dict[str, float]] = field(default_factory=dict)
    qte: dict[str, float] = field(default_factory=dict)
    per_sample: dict[str, list[bool]] | None = field(default=None, repr=False)
    per_sample_fraction: dict[str, list[float]] | None = field(default=None, repr=False)

    def to_dict(self, per_sample: bool = False) -> dict[str, Any]:
        """JSON-ready dict (with ``"schema"``); per-sample flags and fractions only if ``per_sample``."""
        out = {"schema": SCHEMA, **dataclasses.asdict(self)}
        if not per_sample:
            out.pop("per_sample")
            out.pop("per_sample_fraction")
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        """Rebuild a result from :meth:`to_dict` output (unknown keys are an error, a missing schema is not)."""
        return cls(**record_fields(data, cls, SCHEMA, "evaluation result"))

    def save_json(self, path: str | os.PathLike, per_sample: bool = False) -> Path:
        """Write the result as JSON atomically; per-sample flags only if ``per_sample``. Returns the path."""
        return super().save_json(path, per_sample=per_sample)


def record_fields(data: Mapping[str, Any], cls: type, schema: str, what: str) -> dict[str, Any]:
    """The fields of a result record read back from JSON: checks its ``schema`` (a missing one is accepted) and
    refuses keys that are not fields of the dataclass ``cls``."""
    data = dict(data)
    found = data.pop("schema", schema)
    if found != schema:
        raise ValueError(f"unsupported {what} schema {found!r}; this version reads {schema!r}")
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"not a spikeshield {what}: unknown field(s) {sorted(unknown)}")
    return data

