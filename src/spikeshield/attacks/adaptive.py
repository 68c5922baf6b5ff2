"""``snn-adaptive``: the per-sample worst case over (attack x gradient) pairs for SNNs (METHODS 7), cheapest first.

An SNN's robustness number depends on the backward pass the attacker uses; a string of papers (BPTR, RGA, HART,
PDSG, ASSG) each showed the previous gradients too weak. This suite runs attacks through all of them as a cascade:
each member only on the points every member before it failed to fool, so a point counts as robust only if it survives
every pair. The hyper-parameters an attack tunes (HART's width ``g``, ASSG's ``A``) are chosen on images the caller
passes as ``tune_on`` (held-out training images; never the test set), else the defaults are used and the settings
say so.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from spikeshield import decision
from spikeshield.attacks.base import Attack
from spikeshield.attacks.ensemble import RAND_EOT, Suite
from spikeshield.attacks.registry import make_attack, register_suite
from spikeshield.neurons.base import has_spiking_neurons
from spikeshield.validation import unknown_name

#: the surrogate swaps of the standard preset (shape and width; METHODS 7)
SURROGATE_SWEEP = ("triangle-0.5", "triangle-2", "exponential-1-1", "rectangle-1", "arctan-1", "sigmoid-1",
                   "straight_through")

#: members of each preset as ``attack@gradient`` registry names, in the order they run (roughly cheapest first:
#: fused surrogate swaps, rate modes and the ANN twin, then the unrolled HART / PDSG / ASSG, then APGD-T's 9 targets).
#: "quick" is the own-surrogate APGD-CE and the published strongest pair, SA-PGD through ASSG: its cost stays below
#: 1 + 1.9 = 2.9 own-surrogate APGD-CE runs whatever the robust fraction (an ASSG step costs 1.9 plain ones,
#: benchmarks/results/snn_attacks)
PRESETS: dict[str, tuple[str, ...]] = {
    "quick": ("apgd-ce", "sapgd@assg"),
    "standard": ("apgd-ce", *(f"apgd-ce@{g}" for g in SURROGATE_SWEEP), "apgd-ce@bptr", "apgd-ce@rga", "apgd-ce@ann",
                 "apgd-ce@ann-clamp", "apgd-ce@pdsg", "apgd-ce@hart", "apgd-ce@hart-mix", "sapgd@assg", "apgd-t"),
}

#: gradient -> (parameter, candidate values) tuned on ``tune_on`` images; the first candidate is the default
TUNABLE: dict[str, tuple[str, tuple[float, ...]]] = {
    "hart": ("g", (1.0, 0.25, 0.5, 2.0)),
    "hart-mix": ("g", (1.0, 0.25, 0.5, 2.0)),
    "assg": ("A", (0.45, 0.41, 0.43)),
}

#: iterations of the short attacks that score each candidate value during tuning
TUNE_STEPS = 20


def _split_member(name: str) -> tuple[str, str]:
    base, _, grad = name.partition("@")
    return base, grad or "own"


class SNNAdaptive(Suite):
    """The ``snn-adaptive`` suite: a cascade over (attack x gradient mode) pairs with per-sample worst case.

    Args:
        model: a spikeshield SNN on ``[B, C, H, W]`` images in [0, 1].
        eps: L-inf budget in pixel units.
        preset: ``"standard"`` (default: own-surrogate APGD-CE and APGD-T, the surrogate-swap sweep, BPTR, RGA,
            HART and HART-MIX, PDSG, ASSG + SA-PGD, both ANN twins) or ``"quick"`` (APGD-CE through the own
            surrogate, then SA-PGD through ASSG); see :data:`PRESETS`.
        members: an explicit list of ``attack@gradient`` registry names instead of a preset.
        tune_on: ``(x, y)`` images to choose HART's ``g`` and ASSG's ``A`` on (:data:`TUNABLE`; e.g. 256 held-out
            training images); None keeps the defaults (the first candidate).
        tuned: values chosen before, ``{gradient: value}`` (e.g. ``{"hart": 0.5, "assg": 0.43}``, from an earlier
            suite's :meth:`tuned_values`): used as given, no tuning run (tune once per model, pass the values on).
        eot: EOT draws per gradient; None: :data:`~spikeshield.attacks.ensemble.RAND_EOT` for a declared
            stochastic model, else each member's default (:data:`~spikeshield.decision.DEFAULT_EOT` for a model
            observed to be random, 1 otherwise).
        **kwargs: ``clamp`` (threat model) and ``loss``-free base options of :class:`Attack`.

    A model without spiking neurons keeps only the own-gradient members; the ANN-twin members are skipped for a
    model that is not a plain ``create_model`` model. Skipped members and the reasons are in :attr:`skipped`.
    ``last_broken_by`` (after a call) names, per sample, the member that fooled it first (None: not fooled).

    >>> suite = SNNAdaptive(model, eps=8/255, preset="quick")                      # doctest: +SKIP
    >>> x_adv = suite(x, y); suite.last_broken_by[:3]                              # doctest: +SKIP
    ['apgd-ce', None, 'sapgd@assg-0.45']
    >>> evaluate(model, x, y, attacks=["autoattack", "snn-adaptive"], eps=8/255)   # doctest: +SKIP
    """

    name = "snn-adaptive"

    def __init__(self, model, eps: float, preset: str = "standard", members: list[str] | None = None,
                 tune_on: tuple[torch.Tensor, torch.Tensor] | None = None, eot: int | None = None,
                 tuned: dict[str, float] | None = None, **kwargs: Any) -> None:
        if kwargs.get("grad") is not None:
            raise ValueError("snn-adaptive chooses the gradient of each member; do not pass grad=")
        kwargs.pop("grad", None)
        if kwargs.get("targeted"):
            raise ValueError("snn-adaptive is untargeted")
        if members is None and preset not in PRESETS:
            raise unknown_name("snn-adaptive preset", preset, PRESETS)
        names = list(members if members is not None else PRESETS[preset])
        if not names:
            raise ValueError("snn-adaptive needs at least one member")
        if eot is None and decision.declared_stochastic(model):
            eot = RAND_EOT
        super().__init__(model, eps, eot=eot, **kwargs)
        self.preset = preset if members is None else "custom"
        self.skipped: dict[str, str] = {}
        self.tuned: dict[str, dict[str, Any]] = {}
        spiking = has_spiking_neurons(model)
        self.members = {}
        for name in names:
            _, grad = _split_member(name)
            if not spiking and grad != "own":
                self.skipped[name] = "the model has no spiking neurons: every gradient mode is its own gradient"
                continue
            if grad in TUNABLE:
                name = self._tuned_name(name, tune_on, (tuned or {}).get(grad))
            try:
                self.members[name] = self._member(name)
            except ValueError as e:  # e.g. the ANN twin of a model not built by create_model
                self.skipped[name] = str(e)
        if not self.members:
            raise ValueError(f"no snn-adaptive member applies to this model: {self.skipped}")

    def _member(self, name: str) -> Attack:
        return make_attack(name, self.model, self.eps, clamp=self.clamp, **self.draw_options())

    def _tuned_name(self, name: str, tune_on, given: float | None = None) -> str:
        """``name`` with the tunable parameter of its gradient set: ``given``, else by the lowest robust accuracy of
        a short run of the member on ``tune_on`` (attacking only the images the model classifies correctly), else the
        default."""
        base, grad = _split_member(name)
        param, candidates = TUNABLE[grad]
        if given is not None:
            self.tuned[grad] = {param: float(given), "tuned": "given"}
            return f"{base}@{grad}-{float(given):g}"
        if tune_on is None:
            self.tuned[grad] = {param: candidates[0], "tuned": False}
            return f"{base}@{grad}-{candidates[0]:g}"
        x, y = tune_on
        y = y.to(x.device)
        with self.threat_model():  # a held-out image the model gets wrong scores the same under every candidate
            ok, _, images = decision.judge(self.model, x, y, self.score_draws)
        passes = images
        scores = dict.fromkeys(candidates, 0.0)
        for value in candidates if ok.any() else ():
            attack = self._member(f"{base}@{grad}-{value:g}")
            if hasattr(attack, "steps"):
                attack.steps = min(attack.steps, TUNE_STEPS)
            x_adv = attack(x[ok], y[ok])
            with attack.threat_model():
                still, _, images = decision.judge(self.model, x_adv, y[ok], self.score_draws)
            scores[value] = still.sum().item() / y.numel()
            passes += attack.forward_passes + images
        self.forward_passes += passes
        best = min(candidates, key=lambda v: scores[v])  # ties keep the earlier (default first)
        self.tuned[grad] = {param: best, "tuned": True, "robust_acc": {f"{v:g}": s for v, s in scores.items()},
                            "n_images": int(y.numel()), "n_attacked": int(ok.sum()), "steps": TUNE_STEPS,
                            "forward_passes": passes}
        return f"{base}@{grad}-{best:g}"

    def tuned_values(self) -> dict[str, float]:
        """``{gradient: chosen value}`` of the tuned members, to pass on as ``tuned=`` to later suites."""
        return {grad: record[TUNABLE[grad][0]] for grad, record in self.tuned.items()}

    def settings(self) -> dict[str, Any]:
        """The preset, every member's settings, the tuned parameters and the skipped members."""
        return {**super().settings(), "preset": self.preset, "tuned": self.tuned}


register_suite("snn-adaptive", functools.partial(SNNAdaptive, preset="standard"), "standard")
register_suite("snn-adaptive-quick", functools.partial(SNNAdaptive, preset="quick"), "quick")
