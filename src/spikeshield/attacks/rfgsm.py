"""R+FGSM: FGSM after a random sign step.

Paper: Tramer, Kurakin, Papernot, Goodfellow, Boneh, McDaniel, "Ensemble Adversarial Training: Attacks and
Defenses", ICLR 2018 (eq. 7). Distance: L-inf.
"""

from __future__ import annotations

import torch

from spikeshield.attacks.base import Attack, check_step


class RFGSM(Attack):
    """``x' = x + alpha * sign(N(0, I))``, then ``x_adv = x' + (eps - alpha) * sign(grad_x' loss)``.

    Args:
        model: classifier on ``[B, C, H, W]`` images in [0, 1].
        eps: L-inf budget in pixel units.
        alpha: size of the random step, in [0, eps]; default ``eps / 2`` (the paper's setting).
        **kwargs: ``targeted``, ``eot``, ``grad``, ``loss`` of :class:`~spikeshield.attacks.base.Attack`.

    Shapes: ``x`` ``[B, C, H, W]`` in [0, 1], ``y`` ``[B]`` int64 -> ``x_adv`` like ``x``. The random step uses the
    global torch RNG.

    >>> atk = RFGSM(model, eps=8/255)  # alpha = 4/255   # doctest: +SKIP
    >>> x_adv = atk(x, y)                                # doctest: +SKIP
    """

    name = "rfgsm"

    def __init__(self, model, eps: float, alpha: float | None = None, **kwargs) -> None:
        super().__init__(model, eps, **kwargs)
        self.alpha = self.eps / 2 if alpha is None else check_step(alpha)
        if self.alpha > self.eps:
            raise ValueError(f"RFGSM alpha (random step) must not exceed eps = {self.eps}; got {self.alpha}")

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Random sign step of size ``alpha``, then a gradient sign step of size ``eps - alpha``."""
        x_start = self.box(x + self.alpha * torch.randn_like(x).sign())
        return x_start + (self.eps - self.alpha) * self.input_gradient(x_start, y).sign()

    def settings(self) -> dict:
        """Base settings plus ``alpha``."""
        return {**super().settings(), "alpha": self.alpha, "steps": 1}
