"""Certified robustness of a model whose input coding is a smoothing noise (randomized smoothing, METHODS 4).

The smoothed classifier ``g(x) = argmax_c P(model(x) = c)`` takes the probability over the coding's own draws (and
any other randomness of the model: Cohen et al.'s theorem holds for a random base classifier too). CERTIFY (Cohen,
Rosenfeld & Kolter 2019, Algorithm 2) picks the class from ``n0`` draws, counts it in ``n`` fresh draws, takes the
one-sided Clopper-Pearson lower bound ``pA`` at level ``alpha`` and abstains when ``pA < 1/2``; otherwise ``g`` is
constant in a ball around ``x`` with probability at least ``1 - alpha``. The radius depends on the coding:

- RSC-I (``rsc1``: one draw ``n ~ N(0, sigma^2 I)`` repeated over T): an L2 ball of radius ``sigma Phi^-1(pA)``
  in pixel space. The clamp and normalisation after the noise are part of the base classifier.
- RSC-II (``rsc2``: T independent draws): the base classifier sees ``(x + n_1, ..., x + n_T)``, Gaussian noise of
  std ``sigma`` in the T-fold space, where Cohen's radius is ``sigma Phi^-1(pA)``. A pixel-space shift ``delta``
  moves that point by ``(delta, ..., delta)``, of norm ``sqrt(T) ||delta||``, so the input-space radius is
  ``sigma / sqrt(T) Phi^-1(pA)``. It is tight: a classifier of the time mean of the frames sees ``x + mean(n)``,
  whose noise has std ``sigma / sqrt(T)`` (``tests/test_certify.py`` checks both on a linear classifier).
- Poisson (Bernoulli rate coding of T steps; Mukhoty et al., ICLR 2024): the T d spikes are independent
  ``Bernoulli(x_i)``; two inputs' spike distributions are at total-variation distance at most
  ``T ||x - x'||_1``, so every class probability moves by at most that much and the prediction holds in the L1
  ball of radius ``(pA - 1/2) / T`` (``pA - pB > 2 T ||delta||_1`` with ``pB <= 1 - pA``). Mukhoty et al.'s code
  reports ``pA - 1/2`` (no ``1 / T``) and counts the most frequent class of the ``n`` draws instead of the class
  picked from the ``n0`` draws; we do neither.

Radii are in pixel units ([0, 1] images). An L-inf ball of ``eps`` lies inside the L2 ball of radius
``eps sqrt(d)`` and the L1 ball of radius ``eps d`` (``d`` pixels), so certified accuracy at those radii is a lower
bound on robust accuracy at ``eps`` (:meth:`CertifyResult.linf_radius`).

>>> result = certify(model, x, y, n0=100, n=1000, alpha=0.001)      # doctest: +SKIP
>>> result.certified_accuracy(0.25)                                 # doctest: +SKIP
>>> result.save_json("run/certify.json"); result.plot("run/certify.png")   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import nn
from tqdm.auto import tqdm

from spikeshield.distributed import Context
from spikeshield.encoding import RSC, Poisson
from spikeshield.evaluation.metrics import _check_xy
from spikeshield.evaluation.result import JsonRecord, provenance, record_fields
from spikeshield.evaluation.resume import batch_seed, rank_file, run_fingerprint, weights_hash
from spikeshield.fileio import atomic_write_text

#: version of the JSON layout written by :meth:`CertifyResult.to_dict`
CERTIFY_SCHEMA = "spikeshield.certify/1"
#: version of the resume file layout
CERTIFY_STATE_SCHEMA = "spikeshield.certify-state/1"
#: the prediction recorded for an abstention
ABSTAIN = -1


@dataclass(frozen=True)
class Smoothing:
    """What a coding's noise certifies: the ``norm`` of the ball (``"l2"`` or ``"l1"``) and how a lower bound
    ``pA`` on the top class's probability becomes a radius in pixel units."""

    coding: str
    norm: str
    sigma: float | None
    T: int

    def radius(self, p_lower: float) -> float:
        """The certified radius for ``pA = p_lower`` (``>= 1/2``; abstain below)."""
        if self.norm == "l1":
            return (p_lower - 0.5) / self.T
        scale = self.sigma / math.sqrt(self.T) if self.coding == "rsc2" else self.sigma
        return scale * float(stats.norm.ppf(p_lower))


def smoothing_of(model: nn.Module) -> Smoothing:
    """The :class:`Smoothing` of ``model``'s coding (``model.encoder`` and ``model.T``): RSC-I, RSC-II or Poisson.

    Raises ``ValueError`` for a model without such a coding (direct coding has no noise to certify with).
    """
    encoder, T = getattr(model, "encoder", None), getattr(model, "T", None)
    if isinstance(encoder, RSC) and isinstance(T, int):
        if encoder.std <= 0:
            raise ValueError("certify needs RSC noise with std > 0; this model's coding adds none")
        return Smoothing("rsc2" if encoder.fresh_each_step else "rsc1", "l2", encoder.std, T)
    if isinstance(encoder, Poisson) and isinstance(T, int):
        return Smoothing("poisson", "l1", None, T)
    raise ValueError(f"certify needs a spikeshield model whose coding is a smoothing noise (encoder 'rsc1', 'rsc2' "
                     f"or 'poisson'); this one's is {type(encoder).__name__}")


def lower_confidence_bound(count: int, n: int, alpha: float) -> float:
    """One-sided ``1 - alpha`` Clopper-Pearson lower bound on a binomial probability after ``count`` of ``n``."""
    return 0.0 if count == 0 else float(stats.beta.ppf(alpha, count, n - count + 1))


@dataclass
class CertifyResult(JsonRecord):
    """The outcome of :func:`certify`: per sample the smoothed prediction (``-1``: abstained), the lower bound
    ``p_lower`` on its probability and the certified ``radius`` (0 when abstaining) in the ``norm`` of the coding.

    :meth:`certified_accuracy` at radius ``r`` counts samples predicted correctly with ``radius >= r``.
    """

    model: dict[str, Any]
    dataset: str
    coding: str
    norm: str
    sigma: float | None
    T: int
    n0: int
    n: int
    alpha: float
    seed: int
    labels: list[int]
    predictions: list[int]
    p_lower: list[float]
    radii: list[float]
    counts: list[int]
    time_s: float
    spikeshield_version: str = ""
    torch_version: str = ""
    device: str = "cpu"
    git_commit: str | None = None
    date: str = ""
    command: str | None = None
    input_dim: int | None = None

    @property
    def n_examples(self) -> int:
        """Number of certified samples."""
        return len(self.labels)

    @property
    def abstain_rate(self) -> float:
        """The fraction of samples where the smoothed classifier abstained."""
        return sum(p == ABSTAIN for p in self.predictions) / max(self.n_examples, 1)

    def certified_accuracy(self, radius: float) -> float:
        """The fraction of samples predicted correctly with a certified radius of at least ``radius``."""
        hits = sum(p == y and r >= radius for p, y, r in zip(self.predictions, self.labels, self.radii, strict=True))
        return hits / max(self.n_examples, 1)

    def curve(self, radii: Sequence[float] | None = None) -> list[tuple[float, float]]:
        """``(radius, certified accuracy)`` at ``radii`` (default: 0 and every distinct certified radius)."""
        if radii is None:
            radii = sorted({0.0, *(r for r, p in zip(self.radii, self.predictions, strict=True) if p != ABSTAIN)})
        return [(float(r), self.certified_accuracy(r)) for r in radii]

    def linf_radius(self, eps: float) -> float:
        """The radius in this result's norm of the smallest ball holding the L-inf ball of ``eps``: ``eps sqrt(d)``
        (L2) or ``eps d`` (L1) for ``d`` input pixels. Certified accuracy there bounds robust accuracy at ``eps``
        from below."""
        if not self.input_dim:
            raise ValueError("this result does not record the input dimension")
        return eps * (math.sqrt(self.input_dim) if self.norm == "l2" else self.input_dim)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with ``"schema"``, the fields, and the derived ``certified_accuracy`` curve."""
        out = {"schema": CERTIFY_SCHEMA, **dataclasses.asdict(self)}
        out["curve"] = [list(point) for point in self.curve()]
        out["abstain_rate"] = self.abstain_rate
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CertifyResult:
        """Rebuild a result from :meth:`to_dict` output (the derived fields are recomputed)."""
        data = {k: v for k, v in data.items() if k not in ("curve", "abstain_rate")}
        return cls(**record_fields(data, cls, CERTIFY_SCHEMA, "certification result"))

    def plot(self, path: str | os.PathLike, empirical: Mapping[str, Sequence[tuple[float, float]]] | None = None,
             title: str | None = None) -> Path:
        """Certified accuracy (%) against the radius to a PNG; see :func:`spikeshield.report.plot_certified`."""
        from spikeshield.report.plots import plot_certified  # matplotlib only when plotting

        return plot_certified(self, path, empirical=empirical, title=title)


def _draw_counts(model: nn.Module, x: torch.Tensor, num: int, classes: int, batch_size: int) -> np.ndarray:
    """Class counts of ``num`` forward passes of ``model`` on the single image ``x`` ``[C, H, W]``."""
    counts = torch.zeros(classes, dtype=torch.long)
    with torch.no_grad():
        for start in range(0, num, batch_size):
            size = min(batch_size, num - start)
            predicted = model(x.unsqueeze(0).expand(size, *x.shape)).argmax(1).cpu()
            counts += torch.bincount(predicted, minlength=classes)[:classes]
    return counts.numpy()


def certify(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    n0: int = 100,
    n: int = 1000,
    alpha: float = 0.001,
    batch_size: int = 500,
    seed: int = 0,
    progress: bool = True,
    *,
    state_file: str | os.PathLike | None = None,
    command: str | None = None,
    context: Context | None = None,
) -> CertifyResult:
    """Certify each image of ``x`` under ``model``'s coding noise with Cohen et al.'s CERTIFY (module docstring).

    Args:
        model: a spikeshield model with an ``rsc1``, ``rsc2`` or ``poisson`` encoder (:func:`smoothing_of`); its
            mode is left as it is (use ``model.eval()``).
        x: images ``[N, C, H, W]`` in [0, 1]; ``y``: labels ``[N]``.
        n0: draws that pick the class; ``n``: draws that bound its probability (Cohen et al.: 100 and 100,000).
        alpha: the certificate fails with probability at most ``alpha`` per sample.
        batch_size: copies of one image per forward pass.
        seed: each sample's draws are seeded from ``(seed, index)``, so a sample's result does not depend on the
            samples before it or on resuming (it does depend on ``batch_size``, which splits the draws).
        progress: a tqdm progress bar over the samples.
        state_file: a JSON file updated after every sample; if it exists (from an interrupted call with the same
            settings, model and weights) the finished samples are kept and the run goes on from there.
        command: the command line, recorded in the result.
        context: under torchrun, this process's :class:`~spikeshield.distributed.Context`: sample ``i`` is
            certified by rank ``i % world_size`` and every rank returns the merged result, equal to one process's
            but for the time; ``state_file`` becomes one file per rank (``NAME.rank{r}-of-{w}.json``).

    Returns:
        :class:`CertifyResult` (radii in pixel units, in the coding's norm).
    """
    smoothing = smoothing_of(model)
    x, y = _check_inputs(x, y)
    if not (isinstance(n0, int) and isinstance(n, int) and n0 >= 1 and n >= 1):
        raise ValueError(f"n0 and n must be positive integers; got n0={n0!r}, n={n!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    classes = int(getattr(model, "num_classes", 0) or model(x[:1].to(device)).shape[1])
    config = dict(getattr(model, "config", {}) or {})
    ctx = context or Context()
    state_file = rank_file(state_file, ctx)
    fingerprint = run_fingerprint(config=config, weights=weights_hash(model), n0=n0, n=n, alpha=alpha, seed=seed,
                                  batch_size=batch_size, x=_tensor_hash(x), y=y.tolist(),
                                  shard=[ctx.rank, ctx.world_size])
    mine = [index for index in range(x.shape[0]) if ctx.owns(index)]
    records = _load_state(state_file, fingerprint)
    started = time.perf_counter() - sum(r["time_s"] for r in records)
    bar = tqdm(total=len(mine), initial=len(records), disable=not (progress and ctx.is_main), desc="certify",
               dynamic_ncols=True)
    for index in mine[len(records):]:
        t0 = time.perf_counter()
        torch.manual_seed(batch_seed(seed, index))
        image = x[index].to(device)
        top = int(_draw_counts(model, image, n0, classes, batch_size).argmax())
        count = int(_draw_counts(model, image, n, classes, batch_size)[top])
        p_lower = lower_confidence_bound(count, n, alpha)
        certified = p_lower >= 0.5
        records.append({"prediction": top if certified else ABSTAIN, "p_lower": p_lower, "count": count,
                        "radius": smoothing.radius(p_lower) if certified else 0.0, "time_s": time.perf_counter() - t0})
        if state_file is not None:
            state_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(state_file, json.dumps({"schema": CERTIFY_STATE_SCHEMA, "fingerprint": fingerprint,
                                                      "records": records}) + "\n")
        bar.update(1)
    bar.close()
    elapsed = time.perf_counter() - started
    if ctx.distributed:  # rank r holds samples r, r + w, ...: deal them back in order
        shares = ctx.all_gather((records, elapsed))
        records = [shares[index % ctx.world_size][0][index // ctx.world_size] for index in range(x.shape[0])]
        elapsed = max(t for _, t in shares)
    info = getattr(model, "info", None)
    return CertifyResult(
        model=config, dataset=str(config.get("dataset") or getattr(info, "name", "unknown")),
        coding=smoothing.coding, norm=smoothing.norm, sigma=smoothing.sigma, T=smoothing.T, n0=n0, n=n, alpha=alpha,
        seed=seed, labels=y.tolist(), predictions=[r["prediction"] for r in records],
        p_lower=[r["p_lower"] for r in records], radii=[r["radius"] for r in records],
        counts=[r["count"] for r in records], time_s=elapsed, **provenance(device),
        command=command, input_dim=int(x[0].numel()),
    )


def _check_inputs(x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~spikeshield.evaluation.metrics._check_xy`, images ``[N, C, H, W]`` only, labels on the CPU."""
    x, y = _check_xy(x, y)
    if x.dim() != 4:
        raise ValueError(f"need images [N, C, H, W] and labels [N], N >= 1; got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    return x, y.cpu()


def _tensor_hash(x: torch.Tensor) -> str:
    return hashlib.sha256(x.detach().cpu().contiguous().reshape(-1).float().numpy().tobytes()).hexdigest()[:16]


def _load_state(path: str | os.PathLike | None, fingerprint: str) -> list[dict[str, Any]]:
    """The finished records of an interrupted run with the same fingerprint (none if there is no state file)."""
    if path is None or not Path(path).exists():
        return []
    try:
        state = json.loads(Path(path).read_text(encoding="utf-8"))
        schema, found, records = state["schema"], state["fingerprint"], list(state["records"])
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path} is not a spikeshield certification state file ({e}); delete it to start over") \
            from None
    if schema != CERTIFY_STATE_SCHEMA or found != fingerprint:
        raise ValueError(f"{path} belongs to another certification (model, weights, data or settings differ); use "
                         f"another state file or delete it to start over")
    return records


__all__ = ["ABSTAIN", "CERTIFY_SCHEMA", "CertifyResult", "Smoothing", "certify", "lower_confidence_bound",
           "smoothing_of"]
