"""Attacks: one base class (:class:`Attack`), one small file per attack, one registry of named settings.

>>> atk = PGD(model, eps=8/255, alpha=2/255, steps=7, random_start=True)   # doctest: +SKIP
>>> x_adv = atk(x, y)                  # same shape, inside the eps-ball and [0, 1]   # doctest: +SKIP
>>> atk = make_attack("pgd7", model, eps=8/255)                            # doctest: +SKIP
>>> atk = CW(model, eps=1.0); x_adv = atk(x, y); atk.last_l2   # C&W L2 (eps=1: no L-inf clip)   # doctest: +SKIP
>>> atk = EOT(PGD(model, eps=8/255), 10)           # == PGD(model, eps=8/255, eot=10)   # doctest: +SKIP
>>> x_adv = PGD(with_bpda(quantise, model), eps=8/255)(x, y)   # BPDA through a preprocessing   # doctest: +SKIP
>>> x_adv = Transfer(model, eps=8/255, source=other_model, attack="pgd7")(x, y)   # black-box   # doctest: +SKIP
>>> x_adv = Square(model, eps=8/255, n_queries=5000)(x, y)        # score-based black-box   # doctest: +SKIP
>>> x_adv = make_attack("pgd7@rga", model, eps=8/255)(x, y)       # another gradient   # doctest: +SKIP
>>> x_adv = SAPGD(model, eps=8/255, grad="rga")(x, y)      # SA-PGD with the RGA gradient   # doctest: +SKIP
>>> result = evaluate(model, x, y, attacks=[AutoAttack(model, 8/255)])   # the cascade   # doctest: +SKIP
>>> result = evaluate(model, x, y, attacks="autoattack,snn-adaptive")    # + every SNN gradient   # doctest: +SKIP
"""

from spikeshield.attacks.adaptive import SNNAdaptive
from spikeshield.attacks.apgd import APGD, APGDT
from spikeshield.attacks.base import LOSSES, Attack
from spikeshield.attacks.bim import BIM
from spikeshield.attacks.bpda import BPDA, ANNGradientModel, BPDAModel, with_ann_gradients, with_bpda
from spikeshield.attacks.cw import CW
from spikeshield.attacks.ensemble import AutoAttack
from spikeshield.attacks.eot import EOT
from spikeshield.attacks.fab import FAB
from spikeshield.attacks.fgsm import FGSM
from spikeshield.attacks.mifgsm import MIFGSM
from spikeshield.attacks.noise import GaussianNoise
from spikeshield.attacks.pgd import PGD
from spikeshield.attacks.registry import (
    ATTACKS,
    GRADIENT_VARIANTS,
    AttackSpec,
    adaptive_attacks,
    make_attack,
    parse_attack_list,
)
from spikeshield.attacks.rfgsm import RFGSM
from spikeshield.attacks.sapgd import SAPGD
from spikeshield.attacks.square import Square
from spikeshield.attacks.transfer import Transfer

__all__ = ["APGD", "APGDT", "ATTACKS", "BIM", "BPDA", "CW", "EOT", "FAB", "FGSM", "GRADIENT_VARIANTS", "LOSSES",
           "MIFGSM", "PGD", "RFGSM", "SAPGD", "ANNGradientModel", "Attack", "AttackSpec", "AutoAttack", "BPDAModel",
           "GaussianNoise", "SNNAdaptive", "Square", "Transfer", "adaptive_attacks", "make_attack", "parse_attack_list",
           "with_ann_gradients", "with_bpda"]
