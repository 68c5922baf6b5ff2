"""Transfer: a black-box attack that crafts adversarial examples on a source model and scores them on the target.

Papers: Papernot, McDaniel, Goodfellow, "Transferability in Machine Learning", 2016; used as the black-box attack of
the SNN robustness papers (e.g. the image-purification SNN paper: FGSM / PGD from WideResNet16-8-SNN and
ResNet20-SNN). A transfer attack beating the white-box attacks is a sign of gradient obfuscation (METHODS 5, item 2).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spikeshield.attacks.base import Attack


def _input_shape(model: nn.Module) -> tuple[int, int, int] | None:
    """``(channels, size, num_classes)`` from a spikeshield model's ``info``, or None if it has none."""
    info = getattr(model, "info", None)
    if info is None:
        return None
    return (info.channels, info.size, info.num_classes)


class Transfer(Attack):
    """Run ``attack`` against ``source`` (white-box there) and return its adversarial examples for ``model``.

    Args:
        model: the target classifier the examples are scored on; the attack never queries it (no forward pass).
        eps: L-inf budget in pixel units (the source attack uses the same budget).
        source: the surrogate classifier the examples are crafted on (e.g. an independently trained SNN or the
            ANN twin ``create_model(..., ann=True)``). It must take the target's input shape and classes.
            May be omitted when ``attack`` is an Attack instance: then its model is the source.
        attack: a registry name (default ``"pgd7"``, built on ``source`` with ``make_attack``) or an
            :class:`Attack` instance already built for the source model (with the same ``eps``).
        **overrides: settings for a named attack, as in ``make_attack`` (``steps``, ``eot``, ``grad``,
            ``targeted``, ``loss``, ...); not allowed with an Attack instance.

    Attributes:
        source_attack: the attack run on the source model.
        forward_passes: images sent through the source model (the target is never called).

    ``name`` is ``"transfer-<source attack name>"``, e.g. ``"transfer-pgd7"``. There is no registry entry, since
    a name cannot say which source model to use: pass the instance to ``evaluate(model, x, y, attacks=[...])``.

    >>> atk = Transfer(target, eps=8/255, source=ann_twin, attack="pgd7")   # doctest: +SKIP
    >>> x_adv = atk(x, y)                                                    # doctest: +SKIP
    """

    name = "transfer"

    def __init__(self, model: nn.Module, eps: float, source: nn.Module | None = None, attack: str | Attack = "pgd7",
                 **overrides: Any) -> None:
        if isinstance(attack, Attack):
            if overrides:
                raise ValueError(f"settings {sorted(overrides)} apply to a named attack; an Attack instance is used "
                                 f"as built (build it with those settings instead)")
            if source is None:
                source = attack.model
            elif attack.model is not source:
                raise ValueError("the Attack instance given as `attack` must be built on the source model "
                                 "(or omit source=)")
            source_attack = attack
        elif isinstance(attack, str):
            if source is None:
                raise ValueError("Transfer needs a source model: Transfer(model, eps, source=source_model, "
                                 "attack='pgd7')")
            from spikeshield.attacks.registry import make_attack

            source_attack = make_attack(attack, source, eps, **overrides)
        else:
            raise TypeError(f"attack must be a registry name (e.g. 'pgd7') or an Attack instance; got "
                            f"{type(attack).__name__}")
        if not callable(source):
            raise TypeError(f"source must be a callable nn.Module; got {type(source).__name__}")
        super().__init__(model, eps, targeted=source_attack.targeted, eot=source_attack.eot, clamp=source_attack.clamp)
        if abs(source_attack.eps - self.eps) > 1e-12:
            raise ValueError(f"the source attack has eps = {source_attack.eps} but the transfer eps is {self.eps}: "
                             f"build it with the same eps")
        src, tgt = _input_shape(source), _input_shape(model)
        if src is not None and tgt is not None and src != tgt:
            raise ValueError(f"source and target models must take the same inputs and classes: the source takes "
                             f"[C, H, W] = [{src[0]}, {src[1]}, {src[1]}] with {src[2]} classes, the target "
                             f"[{tgt[0]}, {tgt[1]}, {tgt[1]}] with {tgt[2]} classes")
        self.source, self.source_attack = source, source_attack
        self.loss_name = source_attack.loss_name
        self.name = f"transfer-{source_attack.name}"

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Adversarial examples of the source attack on the source model (the target is not queried)."""
        before = self.source_attack.forward_passes
        try:
            x_adv = self.source_attack(x, y)
        finally:
            self.forward_passes += self.source_attack.forward_passes - before
        return x_adv

    def settings(self) -> dict[str, Any]:
        """The transfer record: eps, the source model and the source attack's own settings."""
        config = getattr(self.source, "config", None)
        source = dict(config) if config else {"name": type(self.source).__name__}
        return dict(attack="Transfer", eps=self.eps, targeted=self.targeted, eot=self.eot, clamp=self.clamp,
                    source=source,
                    source_attack={"name": self.source_attack.name, **self.source_attack.settings()})
