"""Transferability between two models: adversarial examples crafted on one, scored on both.

A defence whose white-box robustness is far below its robustness to examples transferred from an independently
trained model behaves normally; the reverse (transfer stronger than white-box) points at obfuscated gradients
(METHODS 5). :func:`transferability` measures one direction; call it twice, swapping the models, for both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from spikeshield import decision
from spikeshield.attacks.base import Attack, check_labels
from spikeshield.attacks.registry import make_attack
from spikeshield.evaluation.robustness import _device_of, _rebatch
from spikeshield.validation import check_eps


@dataclass
class TransferResult:
    """Outcome of :func:`transferability` (accuracies and rates are fractions in [0, 1]).

    ``source_robust_acc``: correct on the source clean and after the white-box attack on it; ``target_robust_acc``:
    correct on the target clean and on the transferred examples; ``transfer_rate``: among the images both models
    classify correctly clean and the attack fools on the source, the share that also fool the target
    (None if there are none); ``n_transferable``: how many such images there were.
    """

    attack: dict[str, Any]
    eps: float
    n_examples: int
    source_clean_acc: float
    target_clean_acc: float
    source_robust_acc: float
    target_robust_acc: float
    transfer_rate: float | None
    n_transferable: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def transferability(
    source: nn.Module,
    target: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: str | Attack = "pgd7",
    eps: float = 8 / 255,
    batch_size: int = 256,
    seed: int = 0,
    score_draws: int | None = None,
) -> TransferResult:
    """Craft ``attack`` on ``source`` (white-box there) and score the examples on ``source`` and ``target``.

    Args:
        source, target: classifiers on the same inputs and classes (e.g. two independently trained SNNs).
        x, y: images ``[N, C, H, W]`` in [0, 1] and labels ``[N]``.
        attack: registry name (built on ``source``; EOT :data:`DEFAULT_EOT` if the source is stochastic) or an
            :class:`Attack` built on ``source`` with budget ``eps``.
        eps: L-inf budget in pixel units.
        batch_size: images per attack call.
        seed: ``torch.manual_seed(seed)`` once at the start.
        score_draws: draws behind each verdict (majority vote, :mod:`spikeshield.decision`); None: 10 for a
            stochastic model (declared or observed), 1 otherwise.

    >>> r = transferability(snn_a, snn_b, x, y, attack="pgd7")     # doctest: +SKIP
    >>> r.source_robust_acc, r.target_robust_acc, r.transfer_rate  # doctest: +SKIP
    """
    eps = check_eps(eps)
    if isinstance(attack, str):
        attack = make_attack(attack, source, eps)  # EOT on its own for a stochastic source (declared or observed)
    elif not isinstance(attack, Attack):
        raise TypeError(f"attack must be a registry name or an Attack built on the source; got {type(attack).__name__}")
    elif attack.model is not source and getattr(attack.model, "stage", None) is not source:
        raise ValueError("the attack must be built on the source model")
    if abs(attack.eps - eps) > 1e-12:
        raise ValueError(f"the attack has eps = {attack.eps} but eps = {eps}: build it with the same eps")
    device = _device_of(source)
    probe = x[:decision.PROBE_IMAGES].to(device)
    draws = {id(m): decision.score_draws_for(decision.is_stochastic(m, probe), score_draws) for m in (source, target)}
    torch.manual_seed(seed)
    flags: dict[str, list[torch.Tensor]] = {k: [] for k in ("src_clean", "tgt_clean", "src_adv", "tgt_adv")}
    for xb, yb in _rebatch(x, y, batch_size, None):
        xb = xb.to(device)
        yb = check_labels(yb.to(device), xb.shape[0], None)
        x_adv = attack(xb, yb)
        with attack.threat_model():
            for key, model, images in (("src_clean", source, xb), ("tgt_clean", target, xb),
                                       ("src_adv", source, x_adv), ("tgt_adv", target, x_adv)):
                flags[key].append(decision.score(model, images, draws[id(model)]).wins(yb).cpu())
    f = {k: torch.cat(v) for k, v in flags.items()}
    transferable = f["src_clean"] & f["tgt_clean"] & ~f["src_adv"]
    n = f["src_clean"].numel()
    n_transferable = int(transferable.sum())
    return TransferResult(
        attack=attack.settings() | {"name": attack.name}, eps=eps, n_examples=n,
        source_clean_acc=int(f["src_clean"].sum()) / n, target_clean_acc=int(f["tgt_clean"].sum()) / n,
        source_robust_acc=int((f["src_clean"] & f["src_adv"]).sum()) / n,
        target_robust_acc=int((f["tgt_clean"] & f["tgt_adv"]).sum()) / n,
        transfer_rate=int((transferable & ~f["tgt_adv"]).sum()) / n_transferable if n_transferable else None,
        n_transferable=n_transferable)
