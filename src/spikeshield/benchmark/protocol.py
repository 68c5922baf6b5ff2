"""One protocol for every model on the board, cut into cached cells (issue 22).

Per model: ``tune`` (HART's and ASSG's parameters, chosen once on held-out training images and passed on),
``robust`` (clean, then AutoAttack - ``rand`` for a stochastic model - and the ``snn-adaptive`` members as one
cascade; with a budget preset, on an SNN, the recorded plan's members instead, in its order:
:data:`spikeshield.benchmark.budget.PLAN`; with EOT and the decision rule where the model is random), ``sweep``
(APGD-CE over eps), ``transfer`` (PGD20 crafted on the model's plain baseline, or on the clean LIF for a baseline),
``audit`` (the obfuscation checklist) and, for a model whose coding is a smoothing noise, ``certify``.
Each cell's JSON is written atomically under ``OUT/cells/MODEL/CELL.json`` with a fingerprint of the weights and
settings; a later run reuses a cell whose fingerprint matches, so a killed run resumes at the first missing cell.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spikeshield.attacks.adaptive import TUNE_STEPS
from spikeshield.benchmark.budget import PLAN
from spikeshield.benchmark.entries import Preset
from spikeshield.evaluation.resume import run_fingerprint, weights_hash
from spikeshield.fileio import atomic_write_text

#: the protocol's budget
EPS = 8 / 255
#: seed of the global RNG before the tuning runs (evaluations seed themselves)
TUNE_SEED = 0
#: version of the protocol: cells computed under another are recomputed
PROTOCOL = "spikeshield.leaderboard-protocol/1"


class CellCache:
    """Cached JSON cells of one model: :meth:`get` returns the stored value when its fingerprint matches, else runs
    the job and stores its value (atomically)."""

    def __init__(self, root: str | Path, model_name: str, model: nn.Module, preset: Preset) -> None:
        self.dir = Path(root) / "cells" / model_name
        self.base = {"protocol": PROTOCOL, "weights": weights_hash(model), "preset": preset.name}

    def path(self, cell: str) -> Path:
        """Where ``cell`` is stored."""
        return self.dir / f"{cell}.json"

    def cached(self, cell: str, settings: dict[str, Any]) -> dict[str, Any] | None:
        """The stored value of ``cell`` if it was computed with these settings and weights."""
        path = self.path(cell)
        if not path.exists():
            return None
        stored = json.loads(path.read_text(encoding="utf-8"))
        return stored["value"] if stored.get("fingerprint") == self._fingerprint(cell, settings) else None

    def get(self, cell: str, settings: dict[str, Any], job: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``cell``'s value: cached, or computed by ``job`` (its wall time recorded) and stored."""
        value = self.cached(cell, settings)
        if value is not None:
            return value
        start = time.perf_counter()
        value = job()
        value["seconds"] = time.perf_counter() - start
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path(cell), json.dumps({"fingerprint": self._fingerprint(cell, settings),
                                                       "settings": settings, "value": value}, indent=1) + "\n")
        return value

    def _fingerprint(self, cell: str, settings: dict[str, Any]) -> str:
        return run_fingerprint(cell=cell, **self.base, settings=settings)


def cells(model: nn.Module, preset: Preset, data: dict[str, torch.Tensor], *, source: nn.Module | None,
          command: str) -> dict[str, tuple[dict[str, Any], Callable[..., dict[str, Any]]]]:
    """``{cell: (settings, job(tuned) -> JSON-ready dict)}`` of the protocol for ``model``, in the order they run.

    ``data``: ``x``/``y`` test images, ``tune_x``/``tune_y`` held-out training images. ``source``: the model the
    transfer cell crafts on (None: no transfer cell).
    """
    from spikeshield.attacks import SNNAdaptive, Transfer, make_attack
    from spikeshield.evaluation import audit, eps_sweep, evaluate
    from spikeshield.evaluation.certification import certify, smoothing_of
    from spikeshield.neurons.base import has_spiking_neurons

    x, y = data["x"], data["y"]
    stochastic = bool(getattr(model, "is_stochastic", False))
    spiking = has_spiking_neurons(model)
    adaptive = spiking and bool(preset.adaptive)  # snn-adaptive runs on SNNs
    # the recorded plan is for SNNs whose every plan member applies (the ANN twin needs a create_model model); other
    # models get the full protocol
    budget = preset.budget and spiking and not SNNAdaptive(model, EPS, members=list(PLAN)).skipped
    first = list(preset.attacks) if preset.attacks else ["autoattack-rand" if stochastic else "autoattack-standard"]
    jobs: dict[str, tuple[dict[str, Any], Callable[..., dict[str, Any]]]] = {}
    members = list(PLAN) if budget else None

    def tune(_: dict) -> dict[str, Any]:
        torch.manual_seed(TUNE_SEED)  # the attacks' random starts: the same choice on every run
        suite = SNNAdaptive(model, EPS, preset=preset.adaptive, members=members,
                            tune_on=(data["tune_x"], data["tune_y"]))
        return {"tuned": suite.tuned_values(), "record": suite.tuned, "forward_passes": suite.forward_passes}
    if adaptive or budget:
        jobs["tune"] = ({"n": preset.n_tune, "adaptive": preset.adaptive, "members": members, "seed": TUNE_SEED,
                         "steps": TUNE_STEPS, "attacked": "clean-correct"}, tune)

    def robust(tuned: dict) -> dict[str, Any]:
        attacks = [SNNAdaptive(model, EPS, members=members, tuned=tuned)] if budget else \
            [*first, *([SNNAdaptive(model, EPS, preset=preset.adaptive, tuned=tuned)] if adaptive else [])]
        n = min(preset.n_eval, len(y))
        result = evaluate(model, x[:n], y[:n], attacks=attacks, eps=EPS, cascade=True, progress=False,
                          command=command)
        return {**result.to_dict(per_sample=True), "budget": {"plan": members} if budget else None}
    jobs["robust"] = ({"n": preset.n_eval, **({"budget": members} if budget else {
        "attacks": first, "adaptive": preset.adaptive if adaptive else None})}, robust)

    def sweep(_: dict) -> dict[str, Any]:
        n = min(preset.n_sweep, len(y))
        return eps_sweep(model, x[:n], y[:n], attacks="apgd-ce", eps_list=(0.0, *preset.eps_list), progress=False,
                         command=command).to_dict()
    jobs["sweep"] = ({"n": preset.n_sweep, "eps": list(preset.eps_list)}, sweep)

    if source is not None:
        def transfer(_: dict) -> dict[str, Any]:
            n = min(preset.n_transfer, len(y))
            attack = Transfer(model, EPS, attack=make_attack("pgd20", source, EPS))
            return evaluate(model, x[:n], y[:n], attacks=[attack], eps=EPS, progress=False,
                            command=command).to_dict()
        jobs["transfer"] = ({"n": preset.n_transfer, "source": weights_hash(source)}, transfer)

    def run_audit(_: dict) -> dict[str, Any]:
        n = min(preset.n_audit, len(y))
        return audit(model, x[:n], y[:n], EPS, progress=False, command=command).to_dict()
    if preset.n_audit:
        jobs["audit"] = ({"n": preset.n_audit}, run_audit)

    try:
        smoothing_of(model)
    except ValueError:
        return jobs

    def run_certify(_: dict) -> dict[str, Any]:
        n = min(preset.n_certify, len(y))
        n0, draws = preset.certify_draws
        return certify(model, x[:n], y[:n], n0=n0, n=draws, progress=False, command=command).to_dict()
    jobs["certify"] = ({"n": preset.n_certify, "draws": list(preset.certify_draws)}, run_certify)
    return jobs


def run_protocol(model: nn.Module, cache: CellCache, preset: Preset, data: dict[str, torch.Tensor], *,
                 source: nn.Module | None, command: str, on_cell: Callable[[str, bool], None] | None = None
                 ) -> dict[str, dict[str, Any]]:
    """Every cell of :func:`cells` for ``model``, cached in ``cache``; ``on_cell(cell, was_cached)`` after each."""
    out: dict[str, dict[str, Any]] = {}
    for name, (settings, job) in cells(model, preset, data, source=source, command=command).items():
        tuned = out.get("tune", {}).get("tuned", {})
        if name == "robust":
            settings = {**settings, "tuned": tuned}
        was_cached = cache.cached(name, settings) is not None
        out[name] = cache.get(name, settings, lambda job=job, tuned=tuned: job(tuned))
        if on_cell is not None:
            on_cell(name, was_cached)
    return out
