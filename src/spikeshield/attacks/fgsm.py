"""FGSM: the fast gradient sign method.

Paper: Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015.
Distance: L-inf.
"""

from __future__ import annotations

import torch

from spikeshield.attacks.base import Attack


class FGSM(Attack):
    """One signed-gradient step of size ``eps``: ``x_adv = clip(x + eps * sign(grad_x loss))``.

    Args:
        model: classifier on ``[B, C, H, W]`` images in [0, 1].
        eps: L-inf budget in pixel units (default in the registry: evaluation's eps, e.g. 8/255).
        **kwargs: ``targeted``, ``eot``, ``grad``, ``loss`` of :class:`~spikeshield.attacks.base.Attack`.

    Shapes: ``x`` ``[B, C, H, W]`` in [0, 1], ``y`` ``[B]`` int64 -> ``x_adv`` like ``x``.

    >>> atk = FGSM(model, eps=8/255)   # doctest: +SKIP
    >>> x_adv = atk(x, y)              # doctest: +SKIP
    """

    name = "fgsm"

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One step of size ``eps`` along the gradient sign."""
        return x + self.eps * self.input_gradient(x, y).sign()
