"""PGD: projected gradient descent (L-inf) with a uniform random start.

Paper: Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant to Adversarial Attacks",
ICLR 2018. Distance: L-inf.
"""

from __future__ import annotations

import torch

from spikeshield.attacks.base import Attack, check_step, check_steps


class PGD(Attack):
    """Start uniformly in the eps-ball (optional), then ``steps`` projected signed-gradient steps of size ``alpha``.

    Per sample it returns the highest-loss iterate among those that fooled the model (confirmed on fresh draws for a
    stochastic model), else the highest-loss iterate, not simply the last one.

    Args:
        model: classifier on ``[B, C, H, W]`` images in [0, 1].
        eps: L-inf budget in pixel units.
        alpha: step size in pixel units (default 2/255).
        steps: number of iterations (default 10).
        random_start: start from a uniform random point of the eps-ball (global torch RNG); default True.
        **kwargs: ``targeted``, ``eot``, ``grad``, ``loss`` of :class:`~spikeshield.attacks.base.Attack`.
            ``targeted=True``: ``y`` holds target labels and the steps descend the loss towards them.

    Shapes: ``x`` ``[B, C, H, W]`` in [0, 1], ``y`` ``[B]`` int64 -> ``x_adv`` like ``x``.

    >>> atk = PGD(model, eps=8/255, alpha=2/255, steps=7, random_start=True)   # doctest: +SKIP
    >>> x_adv = atk(x, y)                                                       # doctest: +SKIP
    """

    name = "pgd"

    def __init__(self, model, eps: float, alpha: float = 2 / 255, steps: int = 10, random_start: bool = True,
                 **kwargs) -> None:
        super().__init__(model, eps, **kwargs)
        self.alpha, self.steps, self.random_start = check_step(alpha), check_steps(steps), bool(random_start)

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Iterate projected signed-gradient steps from a random point of the ball (or from ``x``); keep each
        sample's best iterate (:meth:`~spikeshield.attacks.base.Attack.ascend`)."""
        start = self.uniform_start(x) if self.random_start else x
        return self.ascend(x, y, start, lambda x_adv, g: self.project(x_adv + self.alpha * g.sign(), x), self.steps)

    def settings(self) -> dict:
        """Base settings plus ``alpha``, ``steps`` and ``random_start``."""
        return {**super().settings(), "alpha": self.alpha, "steps": self.steps, "random_start": self.random_start}
