"""SA-PGD: Stable Adaptive PGD, APGD's schedule with an Adam-like normalised step (METHODS 7).

Paper: Wang et al., "Towards Reliable Evaluation of Adversarial Robustness of SNNs", arXiv 2512.22522 (2025), where
it is paired with the ASSG surrogate. Written from METHODS 7 and a reading of the authors' code
(craree/Towards-Reliable-Evaluation-of-Adversarial-Robustness-for-Spiking-Neural-Networks, ``attack.py``,
``ASSG_SAPGD.attack_single_run``); the differences are listed in :class:`SAPGD` and ``docs/attacks.md``.
"""

from __future__ import annotations

import torch

from spikeshield.attacks.apgd import APGD

#: decay of the first moment ``m`` (of the per-sample normalised gradient)
M_DECAY = 0.5
#: decay of the second moment ``v`` (of the per-sample normalised squared gradient)
V_DECAY = 0.8
#: guard in ``m / (sqrt(v) + SQRT_V_GUARD)`` (as the reference)
SQRT_V_GUARD = 1e-12


class SAPGD(APGD):
    """Stable Adaptive PGD (L-inf): APGD's runs, checkpoints and best points with an adaptive, clipped step.

    With ``g`` the objective's input gradient at the iterate and per-sample means over that sample's pixels, each
    iteration updates

        ``m <- 0.5 m + g / mean|g|``,  ``v <- 0.8 v + g^2 / mean(g^2)``  (``m = v = 0`` at the start of a run),
        ``x_adv <- proj(x_adv + clip(eta * m / (sqrt(v) + 1e-12), -eta, eta))``,

    so a pixel moves by at most ``eta`` and by less where its gradient changed sign recently. ``eta`` is per sample,
    starts at ``eps`` and is halved at APGD's checkpoints (after ``0.22 steps`` iterations, then ever shorter
    intervals) when the loss rose in at most ``rho`` of the interval's steps or the best loss stalled; such a sample
    restarts from its best point (its ``m`` and ``v`` carry on). Each run starts on the eps-ball's surface;
    further restarts run only on samples not yet fooled. Per sample the attack returns a point that fooled the model
    (misclassified; for ``targeted=True``, classified as the target) if any iterate did, else the highest-loss point.

    Differences from the reference code, deliberate:

    - **the checkpoint rule is APGD's** (METHODS 7: "halved at APGD-style checkpoints"): the reference halves
      ``eta`` at every checkpoint, unconditionally, and never returns to the best point.
    - **the normalisations are guarded**: a sample whose gradient vanishes (no spikes reach the loss) gets
      ``m = v = 0`` contributions and does not move, where the reference divides by ``mean|g| = 0`` (NaN); the
      gradient is first rescaled by its per-sample max (the same ratios, no underflow of ``g^2``).
    - as :class:`~spikeshield.attacks.apgd.APGD`: no seeding inside, every sample is attacked (also those already
      misclassified), unfooled samples get their highest-loss point rather than the clean image, any loss
      (``"ce"``, ``"dlr"``, ``"cw"``, a callable) and ``targeted``, and EOT predictions from the averaged logits. The
      ASSG surrogate of the paper is a separate gradient mode (``grad=``), not part of this class.

    Args:
        model: classifier on ``[B, C, H, W]`` images in [0, 1].
        eps: L-inf budget in pixel units.
        loss: ``"ce"`` (default), ``"dlr"`` (>= 3 classes), ``"cw"`` or a callable per-sample loss.
        steps: iterations per restart (default 100, as METHODS 7).
        restarts: random restarts (default 1).
        rho: oscillation threshold of APGD's step-size rule (default 0.75).
        **kwargs: ``targeted``, ``eot``, ``grad`` of :class:`~spikeshield.attacks.base.Attack`. With ``eot=m``
            every gradient, loss and prediction is the mean over ``m`` draws of a stochastic model.

    Shapes: ``x`` ``[B, C, H, W]`` in [0, 1], ``y`` ``[B]`` int64 -> ``x_adv`` like ``x``. Random starts use the
    global torch RNG (never seeded here).

    >>> atk = SAPGD(model, eps=8/255, grad="rga")        # doctest: +SKIP
    >>> x_adv = atk(x, y)                                # doctest: +SKIP
    """

    name = "sapgd"
    #: ``eta`` starts at ``eps`` (APGD: ``2 eps``)
    initial_step = 1.0

    def _init_state(self, x_adv: torch.Tensor) -> dict[str, torch.Tensor]:
        """Zero first and second moments ``m``, ``v`` (shaped like the images) at the start of a run."""
        return {"m": torch.zeros_like(x_adv), "v": torch.zeros_like(x_adv)}

    def _step(self, x_adv: torch.Tensor, grad: torch.Tensor, step: torch.Tensor, x: torch.Tensor, i: int,
              state: dict[str, torch.Tensor]) -> torch.Tensor:
        """Update ``m`` and ``v`` with the per-sample normalised gradient and take the clipped step of size ``step``.

        Arguments as :meth:`APGD._step <spikeshield.attacks.apgd.APGD._step>`; ``i`` is unused.
        """
        view = (-1,) + (1,) * (grad.dim() - 1)
        scale = grad.abs().flatten(1).amax(1)
        g = grad / torch.where(scale > 0, scale, torch.ones_like(scale)).view(view)  # same ratios, no underflow
        l1 = g.abs().flatten(1).mean(1)
        l2 = g.square().flatten(1).mean(1)
        m = M_DECAY * state["m"] + g / torch.where(l1 > 0, l1, torch.ones_like(l1)).view(view)
        v = V_DECAY * state["v"] + g.square() / torch.where(l2 > 0, l2, torch.ones_like(l2)).view(view)
        state["m"], state["v"] = m, v
        move = torch.minimum(torch.maximum(step * m / (v.sqrt() + SQRT_V_GUARD), -step), step)
        return self.project(x_adv + move, x)
