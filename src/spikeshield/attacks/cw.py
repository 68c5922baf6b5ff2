"""CW: the Carlini-Wagner L2 attack (tanh-space Adam optimisation with a binary search over the constant ``c``).

Paper: Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks", IEEE S&P 2017. Distance: L2
(the result is also clipped to the L-inf eps-ball that every spikeshield attack honours; ``eps=1`` = no L-inf limit).
The CW *loss* for L-inf PGD is ``PGD(model, eps, loss="cw")`` (registry name ``cw-pgd``).
"""

from __future__ import annotations

import math

import torch

from spikeshield.attacks.base import LOSSES, Attack, check_steps

#: ``c`` above this bound means "no successful ``c`` seen yet" (C&W's reference code uses 1e10 and 1e9 likewise)
_NO_UPPER = 1e10


class CW(Attack):
    """Carlini-Wagner L2: minimise ``||x' - x||_2^2 + c * f(x')`` over ``x' = (tanh(w) + 1) / 2`` with Adam.

    ``f(x') = max(z_y - max_{j != y} z_j, -kappa)`` (untargeted) or ``max(max_{j != t} z_j - z_t, -kappa)``
    (targeted, ``y`` = targets ``t``). ``c`` is searched per sample over ``binary_steps`` rounds of ``steps`` Adam
    steps each (``w`` and Adam restart every round): multiplied by 10 until the sample is fooled, then bisected
    between the largest failing and the smallest successful value. Per sample the successful point with the smallest
    L2 distance is returned; a sample never fooled gets ``x`` itself back.

    L-inf budget: spikeshield attacks return points inside the L-inf eps-ball, so every iterate is clipped to the
    ball (its gradient is zero on clipped pixels) and only clipped points count as successes. With the default
    ``eps=1.0`` the ball is the whole box and CW is the plain L2 attack. ``[0, 1]`` holds by the tanh change of
    variables.

    Args:
        model: classifier on ``[B, C, H, W]`` images in [0, 1].
        eps: L-inf clip in pixel units (default 1.0: none).
        c: initial constant of the misclassification term (default 1.0), > 0.
        kappa: confidence margin (default 0), >= 0: success needs the margin to reach ``kappa``.
        steps: Adam steps per binary-search round (default 50, as the image-purification paper).
        lr: Adam learning rate on ``w`` (default 0.01, as the image-purification paper).
        binary_steps: rounds of the search over ``c`` (default 5).
        **kwargs: ``targeted``, ``eot``, ``grad`` of :class:`~spikeshield.attacks.base.Attack`. ``eot=m``
            averages the objective, logits and input gradient over ``m`` draws (success is judged on the mean
            logits). The loss is fixed (the CW margin); passing another ``loss`` is a ``ValueError``.

    Attributes:
        last_l2: L2 distances ``[B]`` of the points returned by the last call (0 for samples not fooled).
        last_success: ``[B]`` bool, which samples the last call fooled (reached margin ``kappa``).

    Only ``w`` is optimised (Adam over ``[w]``, gradients from :func:`torch.autograd.grad`): model parameters get no
    ``.grad``. Deterministic: no random start.

    >>> atk = CW(model, c=1.0, steps=50, lr=0.01, binary_steps=5)   # doctest: +SKIP
    >>> x_adv = atk(x, y); atk.last_l2                             # doctest: +SKIP
    """

    name = "cw"

    def __init__(self, model, eps: float = 1.0, c: float = 1.0, kappa: float = 0.0, steps: int = 50,
                 lr: float = 0.01, binary_steps: int = 5, **kwargs) -> None:
        if kwargs.get("loss", "cw") != "cw":
            raise ValueError(f"CW uses its own margin loss (loss='cw'); got loss={kwargs['loss']!r}")
        kwargs["loss"] = "cw"
        super().__init__(model, eps, **kwargs)
        self.c = _check_positive_float(c, "c", strict=True)
        self.kappa = _check_positive_float(kappa, "kappa", strict=False)
        self.lr = _check_positive_float(lr, "lr", strict=True)
        self.steps = check_steps(steps)
        if isinstance(binary_steps, bool) or not isinstance(binary_steps, int) or binary_steps < 1:
            raise ValueError(f"binary_steps must be an integer >= 1; got {binary_steps!r}")
        self.binary_steps = binary_steps
        self.last_l2: torch.Tensor | None = None
        self.last_success: torch.Tensor | None = None

    def _clamped_margin(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """CW margin clamped so that the base's (sign-adjusted) objective is ``min(margin towards success, kappa)``."""
        m = LOSSES["cw"](logits, y)
        return m.clamp(min=-self.kappa) if self.targeted else m.clamp(max=self.kappa)

    def _success(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample success at the (mean) logits: misclassified / on target, with margin >= ``kappa``."""
        m = LOSSES["cw"](logits, y)
        pred = logits.argmax(1)
        if self.targeted:
            return (pred == y) & (-m >= self.kappa)
        return (pred != y) & (m >= self.kappa)

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Binary search over ``c``; per round ``steps`` Adam steps in tanh space; keep the smallest-L2 success."""
        batch = x.shape[0]
        shape = (batch,) + (1,) * (x.dim() - 1)
        w0 = torch.atanh((2 * x - 1).clamp(-1 + 1e-6, 1 - 1e-6))
        c = torch.full((batch,), self.c, dtype=x.dtype, device=x.device)
        lower = torch.zeros_like(c)
        upper = torch.full_like(c, _NO_UPPER)
        best_l2 = torch.full_like(c, math.inf)
        best_x = x.clone()
        for _ in range(self.binary_steps):
            w = w0.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([w], lr=self.lr)
            fooled = torch.zeros(batch, dtype=torch.bool, device=x.device)
            for step in range(self.steps + 1):  # the last pass only scores the final iterate
                x_box = (torch.tanh(w.detach()) + 1) / 2
                x_adv = self.project(x_box, x)
                objective, logits, grad = self.objective_and_gradient(x_adv, y, self._clamped_margin)
                l2 = (x_adv - x).flatten(1).norm(dim=1)
                success = self._success(logits, y)
                better = success & (l2 < best_l2)
                best_l2 = torch.where(better, l2, best_l2)
                best_x = torch.where(better.view(shape), x_adv, best_x)
                fooled |= success
                if step == self.steps:
                    break
                # d/dx' of ||x' - x||^2 + c f(x'), f = -objective; through the L-inf clip and x' = (tanh(w) + 1) / 2
                inside = ((x_box - x).abs() <= self.eps).to(x.dtype)
                grad_x = 2 * (x_adv - x) - c.view(shape) * grad
                w.grad = grad_x * inside * (1 - torch.tanh(w.detach()) ** 2) / 2
                optimizer.step()
            # C&W's search: shrink the upper bound on success, else raise the lower bound (x10 until an upper exists)
            upper = torch.where(fooled, torch.minimum(upper, c), upper)
            lower = torch.where(fooled, lower, torch.maximum(lower, c))
            bounded = upper < _NO_UPPER / 10
            c = torch.where(bounded, (lower + upper) / 2, c * 10)
        found = torch.isfinite(best_l2)
        self.last_success = found
        self.last_l2 = torch.where(found, best_l2, torch.zeros_like(best_l2)).detach()
        return best_x.detach()

    def settings(self) -> dict:
        """Base settings plus ``c``, ``kappa``, ``steps``, ``lr`` and ``binary_steps``."""
        return {**super().settings(), "c": self.c, "kappa": self.kappa, "steps": self.steps, "lr": self.lr,
                "binary_steps": self.binary_steps}


def _check_positive_float(value, name: str, strict: bool) -> float:
    """``value`` as a float; a ``ValueError`` naming ``name`` unless it is a finite number > 0 (>= 0 if not strict)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (strict and value == 0):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} 0; got {value!r}")
    return float(value)
