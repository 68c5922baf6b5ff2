"""Attack suites run as cascades (:class:`Suite`), and AutoAttack: a fixed, parameter-free ensemble of diverse
attacks run as a cascade with per-sample worst case.

Paper: Croce, Hein, "Reliable Evaluation of Adversarial Robustness with an Ensemble of Diverse Parameter-free
Attacks", ICML 2020; versions and defaults as the authors' reference (fra31/auto-attack ``autoattack.py``):

- ``"standard"``: APGD-CE (100 steps, 1 restart), APGD-T (targeted DLR, 9 target classes), FAB-T (9 target
  classes), Square (5000 queries, p_init 0.8);
- ``"rand"``, for randomised defences: APGD-CE and APGD-DLR, each with EOT over 20 draws;
- ``"auto"`` (ours): ``"rand"`` when ``model.is_stochastic``, else ``"standard"``.

Each member runs only on the points that every member before it failed to fool; a point counts as robust only if it
survives all of them.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import torch

from spikeshield import decision
from spikeshield.attacks.base import Attack
from spikeshield.attacks.registry import make_attack, register_suite
from spikeshield.validation import unknown_name

#: the members of each version: (registry name, settings that differ from the registry's)
VERSIONS: dict[str, tuple[tuple[str, dict[str, Any]], ...]] = {
    "standard": (("apgd-ce", {}), ("apgd-t", {}), ("fab-t", {}), ("square", {})),
    "rand": (("apgd-ce", {}), ("apgd-dlr", {})),
}

#: EOT draws per gradient of the ``"rand"`` version (the reference's ``eot_iter``)
RAND_EOT = 20

class Suite(Attack):
    """Several attacks run as one cascade: each member only on the points no member before it fooled.

    Subclasses fill :attr:`members` (``{name: attack}``, in order) and may record members they left out in
    :attr:`skipped` (``{name: reason}``). Called as an attack, a suite runs every point through the cascade (the
    first member attacks them all) and returns per sample its strongest adversarial point
    (:class:`~spikeshield.decision.StrongestPoint`: a point the decision rule judges fooled, else the lowest-margin
    point any member found), never the clean image. A member's success is judged by the decision rule
    (:func:`~spikeshield.decision.judge`: majority over ``score_draws`` draws, a break confirmed on fresh draws for a
    stochastic model). ``last_broken_by`` names, per sample, the member that fooled it first (or None).
    ``evaluate`` runs the members as the same cascade with per-member accounting.
    """

    members: dict[str, Attack]
    skipped: dict[str, str]

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Run the members as a cascade; return each point's strongest adversarial example."""
        strongest = decision.StrongestPoint(x)
        robust = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        broken_by: list[str | None] = [None] * x.shape[0]
        for name, attack in self.members.items():
            todo = robust.nonzero().squeeze(1)
            if not todo.numel():
                break
            before = attack.forward_passes
            candidate = attack(x[todo], y[todo])
            self.forward_passes += attack.forward_passes - before
            ok, scores, images = decision.judge(self.model, candidate, y[todo], self.score_draws,
                                                confirm=bool(self.stochastic))
            self.forward_passes += images
            strongest.offer(todo, candidate, ok, scores.margin(y[todo]))
            robust[todo[~ok]] = False
            for i in todo[~ok].tolist():
                broken_by[i] = name
        self.last_broken_by = broken_by
        return strongest.x

    def settings(self) -> dict[str, Any]:
        """The base settings, every member's settings and the members left out (with the reasons)."""
        return {**super().settings(), "members": {name: attack.settings() for name, attack in self.members.items()},
                "skipped": dict(getattr(self, "skipped", {}))}


class AutoAttack(Suite):
    """AutoAttack (L-inf) as one attack: its members run in turn, each on the points not yet fooled.

    Args:
        model: classifier on ``[B, C, H, W]`` images in [0, 1].
        eps: L-inf budget in pixel units.
        version: ``"auto"`` (default: ``"rand"`` for a stochastic model, else ``"standard"``), ``"standard"`` or
            ``"rand"``.
        eot: EOT draws for the members' gradients; None: :data:`RAND_EOT` for ``"rand"``, else each member's
            default (:data:`~spikeshield.decision.DEFAULT_EOT` on a stochastic model, 1 otherwise).
        grad: the attacker's backward pass for every gradient member (see :class:`Attack`).

    Attributes:
        members: ``{name: attack}`` in the order they run.

    Called as an attack, it returns per sample the first adversarial point a member finds, else ``x``. For a
    resumable run with per-member accounting use ``spikeshield.evaluation.evaluate(model, x, y,
    attacks=AutoAttack(model, eps), state_file=...)``, which runs the same cascade.

    >>> aa = AutoAttack(model, eps=8/255)                # "standard", or "rand" for a stochastic model
    ...                                                  # doctest: +SKIP
    >>> result = evaluate(model, x, y, attacks=aa, eps=8/255, state_file="aa.json")   # doctest: +SKIP
    """

    name = "autoattack"

    def __init__(self, model, eps: float, version: str = "auto", eot: int | None = None, **kwargs) -> None:
        if kwargs.get("targeted"):
            raise ValueError("AutoAttack is untargeted (its APGD-T and FAB-T pick their own target classes)")
        if version not in ("auto", *VERSIONS):
            raise unknown_name("AutoAttack version", version, ("auto", *VERSIONS))
        stochastic = bool(decision.declared_stochastic(model))
        self.version = ("rand" if stochastic else "standard") if version == "auto" else version
        if eot is None and self.version == "rand":
            eot = RAND_EOT
        super().__init__(model, eps, eot=eot, **kwargs)
        self.skipped: dict[str, str] = {}
        if stochastic and self.version == "standard":
            warnings.warn("AutoAttack 'standard' on a stochastic model (model.is_stochastic): its attacks see one "
                          "random draw per step, which overstates robustness. Use version='rand' (EOT over 20 "
                          "draws) or version='auto'.", UserWarning, stacklevel=2)
        self.members: dict[str, Attack] = {
            key: make_attack(key, model, eps, **{**settings, **self._member_options(key)})
            for key, settings in VERSIONS[self.version]}

    def _member_options(self, key: str) -> dict[str, Any]:
        """Base-class options passed to a member (Square, which uses no gradient, takes no grad)."""
        common = {**self.draw_options(), "clamp": self.clamp}
        return common if key == "square" else {**common, "grad": self.grad}

    def settings(self) -> dict[str, Any]:
        """The suite's version and every member's settings."""
        return {**super().settings(), "version": self.version}


for _name, _version in (("autoattack", "auto"), ("autoattack-standard", "standard"), ("autoattack-rand", "rand")):
    register_suite(_name, functools.partial(AutoAttack, version=_version), _version)
