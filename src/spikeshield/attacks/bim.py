"""BIM (I-FGSM): iterated FGSM without a random start.

Paper: Kurakin, Goodfellow, Bengio, "Adversarial Examples in the Physical World", ICLR workshop 2017.
Distance: L-inf.
"""

from __future__ import annotations

import torch

from spikeshield.attacks.base import Attack, check_step, check_steps


class BIM(Attack):
    """``steps`` signed-gradient steps of size ``alpha`` from ``x``, each projected into the eps-ball and [0, 1].

    Per sample it returns the highest-loss iterate among those that fooled the model (confirmed on fresh draws for a
    stochastic model), else the highest-loss iterate.

    Args:
        model: classifier on ``[B, C, H, W]`` images in [0, 1].
        eps: L-inf budget in pixel units.
        alpha: step size in pixel units; default ``eps / steps`` (so the last step can reach the ball's edge).
        steps: number of iterations (default 7, "BIM7").
        **kwargs: ``targeted``, ``eot``, ``grad``, ``loss`` of :class:`~spikeshield.attacks.base.Attack`.

    Shapes: ``x`` ``[B, C, H, W]`` in [0, 1], ``y`` ``[B]`` int64 -> ``x_adv`` like ``x``.

    >>> atk = BIM(model, eps=8/255, steps=7)   # doctest: +SKIP
    >>> x_adv = atk(x, y)                      # doctest: +SKIP
    """

    name = "bim"

    def __init__(self, model, eps: float, alpha: float | None = None, steps: int = 7, **kwargs) -> None:
        super().__init__(model, eps, **kwargs)
        self.steps = check_steps(steps)
        self.alpha = self.eps / self.steps if alpha is None else check_step(alpha)

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Iterate projected signed-gradient steps from ``x``; keep each sample's best iterate
        (:meth:`~spikeshield.attacks.base.Attack.ascend`)."""
        return self.ascend(x, y, x, lambda x_adv, g: self.project(x_adv + self.alpha * g.sign(), x), self.steps)

    def settings(self) -> dict:
        """Base settings plus ``alpha`` and ``steps``."""
        return {**super().settings(), "alpha": self.alpha, "steps": self.steps}
