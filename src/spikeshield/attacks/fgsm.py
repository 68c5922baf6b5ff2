"""FGSM: the fast gradient sign method.

Paper: Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015.
Distance: L-inf.
"""

from __future__ import annotations

import torch

from spikeshield.attacks.base import Attack, check_step


class FGSM(Attack):
    """One signed-gradient step of size ``eps``: ``x_adv = clip(x + eps * sign(grad_x loss))``.

    Args:
        model: classifier on ``[B, C, H, W]`` images in [0, 1].
        eps: L-inf budget in pixel units (default in the registry: evaluation's eps, e.g. 8/255).
        start: radius (pixel units, <= eps) of a uniform random start ``x + U(-start, start)`` before the step, the
            result projected back into the eps-ball; 0 (default) is plain FGSM. The RandHet-SNN code trains with
            ``start = eps / 10``.
        **kwargs: ``targeted``, ``eot``, ``grad``, ``loss`` of :class:`~spikeshield.attacks.base.Attack`.

    Shapes: ``x`` ``[B, C, H, W]`` in [0, 1], ``y`` ``[B]`` int64 -> ``x_adv`` like ``x``.

    >>> atk = FGSM(model, eps=8/255)   # doctest: +SKIP
    >>> x_adv = atk(x, y)              # doctest: +SKIP
    """

    name = "fgsm"

    def __init__(self, model, eps: float, start: float = 0.0, **kwargs) -> None:
        super().__init__(model, eps, **kwargs)
        self.start = check_step(start, "start")
        if self.start > self.eps:
            raise ValueError(f"the random start's radius ({self.start:g}) must not exceed eps ({self.eps:g})")

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One step of size ``eps`` along the gradient sign (from a random point within ``start`` of ``x``)."""
        x0 = self.box(x + torch.empty_like(x).uniform_(-self.start, self.start)) if self.start else x
        return x0 + self.eps * self.input_gradient(x0, y).sign()

    def settings(self) -> dict:
        """Base settings plus ``start`` (when non-zero)."""
        return {**super().settings(), **({"start": self.start} if self.start else {})}
