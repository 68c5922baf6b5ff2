"""Gaussian noise: a gradient-free baseline that adds random noise to the images.

Source: the image-purification SNN paper's "Gaussian noise, level 20" attack (read as ``std = 20/255``). Distance:
L-inf, like every spikeshield attack: the noisy images are projected into the eps-ball and [0, 1].
"""

from __future__ import annotations

import torch

from spikeshield.attacks.base import Attack, check_step


class GaussianNoise(Attack):
    """``x_adv = proj(x + N(0, std^2))``: i.i.d. Gaussian noise per pixel, clipped to the eps-ball and [0, 1].

    The noise ignores the model and the labels (no gradient, no forward pass). Gaussian noise is usually not bounded
    by ``eps``; here it is, like every attack (the base class contract). For unbounded noise set ``eps=1``
    (then only the clip to [0, 1] applies).

    Args:
        model: classifier on ``[B, C, H, W]`` images in [0, 1] (used only to check the inputs).
        eps: L-inf budget in pixel units; ``1.0`` for unbounded noise.
        std: noise standard deviation in pixel units (default 20/255, the purification paper's "level 20").
        **kwargs: base-class options of :class:`~spikeshield.attacks.base.Attack`; ``eot``, ``grad``,
            ``loss`` and ``targeted`` have no effect on the noise.

    Shapes: ``x`` ``[B, C, H, W]`` in [0, 1], ``y`` ``[B]`` int64 -> ``x_adv`` like ``x``. The noise comes from the
    global torch RNG.

    >>> atk = GaussianNoise(model, eps=1.0, std=20/255)   # doctest: +SKIP
    >>> x_noisy = atk(x, y)                               # doctest: +SKIP
    """

    name = "gaussian"

    def __init__(self, model, eps: float, std: float = 20 / 255, **kwargs) -> None:
        super().__init__(model, eps, **kwargs)
        self.std = check_step(std, "std")

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Add ``N(0, std^2)`` noise to every pixel (the base class projects the result)."""
        return x + self.std * torch.randn_like(x)

    def settings(self) -> dict:
        """Base settings plus ``std``."""
        return {**super().settings(), "std": self.std}
