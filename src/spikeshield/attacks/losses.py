"""The attack losses, in one place: per-sample functions ``loss(logits [B, classes], y [B]) -> [B]`` to ascend.

Cross-entropy; the Carlini-Wagner margin (Carlini & Wagner, S&P 2017); the Difference of Logits Ratio and its
targeted form (Croce & Hein, ICML 2020, eq. 5 and 6). Attacks name them through :data:`LOSSES` (``loss="dlr"``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy ``[B]``."""
    return F.cross_entropy(logits, y, reduction="none")


def cw_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample Carlini-Wagner margin ``max_{j != y} z_j - z_y`` ``[B]`` (Carlini & Wagner, S&P 2017), to be ascended.

    Positive exactly when the sample is misclassified (ties aside); for a targeted attack (``y`` = targets) the base
    class descends it, i.e. raises ``z_t`` above every other logit. Its logit gradient is never zero. Needs at least
    2 classes.
    """
    if logits.shape[-1] < 2:
        raise ValueError(f"the CW loss needs at least 2 classes; the model has {logits.shape[-1]}")
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return others.max(1).values - z_y


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample Difference of Logits Ratio ``[B]`` (Croce & Hein, ICML 2020, eq. 5), to be ascended.

    ``DLR = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)`` with ``z_pi1 >= z_pi2 >= ...`` the sorted logits. It is
    invariant to shifts and rescalings of the logits. Needs at least 3 classes.
    """
    if logits.shape[-1] < 3:
        raise ValueError(f"the DLR loss needs at least 3 classes; the model has {logits.shape[-1]}: use loss='ce'")
    z_sorted = logits.sort(dim=1).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    y_is_top = logits.argmax(1) == y
    z_other = torch.where(y_is_top, z_sorted[:, -2], z_sorted[:, -1])
    return -(z_y - z_other) / (z_sorted[:, -1] - z_sorted[:, -3] + 1e-12)


def targeted_dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample targeted DLR loss ``[B]`` to ascend (Croce & Hein 2020, eq. 6).

    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` with ``z_pi1 >= z_pi2 >= ...`` the sorted logits, ``y`` the
    true and ``t`` the target class. With exactly 3 classes ``z_pi4`` is taken as ``z_pi3``; fewer is an error.
    """
    classes = logits.shape[-1]
    if classes < 3:
        raise ValueError(f"the targeted DLR loss needs at least 3 classes; the model has {classes}")
    z_sorted = logits.sort(dim=1).values
    low = z_sorted[:, -3] if classes == 3 else 0.5 * (z_sorted[:, -3] + z_sorted[:, -4])
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (z_sorted[:, -1] - low + 1e-12)


#: Per-sample attack losses ``loss(logits [B, classes], y [B]) -> [B]``; the attack ascends their sum.
LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ce": cross_entropy, "dlr": dlr_loss, "cw": cw_loss}
