"""One registry of named attacks with their standard settings: ``make_attack("pgd7", model, eps=8/255)``.

=========  ======  ============  ============  =======================================================
name       class   steps         alpha         source of the setting
=========  ======  ============  ============  =======================================================
fgsm       FGSM    1             eps           Goodfellow et al. 2015
rfgsm      RFGSM   1             eps/2 random  Tramer et al. 2018 (as HoSNN)
bim7       BIM     7             eps/7         Kurakin et al. 2017 (as HoSNN)
pgd7       PGD     7             0.01          Ding et al. 2022 / HoSNN; random start
pgd20      PGD     20            0.01          HoSNN; random start
pgd40      PGD     40            0.01          HoSNN; random start
pgd10      PGD     10            1.6/255       RandHet-SNN (alpha = 16/(255 k)); random start
mifgsm     MIFGSM  5             2/255         Dong et al. 2018; decay 1.0 (RandHet code, torchattacks)
apgd-ce    APGD    100           2 eps, auto   Croce & Hein 2020; CE loss, 1 restart
apgd-dlr   APGD    100           2 eps, auto   Croce & Hein 2020; DLR loss, 1 restart
apgd-t     APGDT   100 x 9       2 eps, auto   Croce & Hein 2020; targeted DLR, top-9 other classes
gaussian   Gauss.  0             -             purification paper's "level 20" noise: std 20/255
cw-pgd     PGD     30            0.01          PGD with the CW margin loss (Carlini & Wagner 2017); random start
cw         CW      50 x 5        Adam lr 0.01  Carlini & Wagner 2017, L2; c = 1, 5 binary-search rounds (purif. paper)
=========  ======  ============  ============  =======================================================

Names are matched ignoring case, surrounding spaces, ``-`` and ``_`` (``APGD_CE``, ``pgd-7``); the registered
spelling is the attack's ``name``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from spikeshield.attacks.apgd import APGD, APGDT
from spikeshield.attacks.base import Attack
from spikeshield.attacks.bim import BIM
from spikeshield.attacks.cw import CW
from spikeshield.attacks.fgsm import FGSM
from spikeshield.attacks.mifgsm import MIFGSM
from spikeshield.attacks.noise import GaussianNoise
from spikeshield.attacks.pgd import PGD
from spikeshield.attacks.rfgsm import RFGSM
from spikeshield.validation import unknown_name


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: its class, the settings that define the name, and where they come from."""

    cls: type[Attack]
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = ""


ATTACKS: dict[str, AttackSpec] = {
    "fgsm": AttackSpec(FGSM, {}, "Goodfellow et al., ICLR 2015"),
    "rfgsm": AttackSpec(RFGSM, {"alpha": None}, "Tramer et al., ICLR 2018; alpha = eps/2 as HoSNN"),
    "bim7": AttackSpec(BIM, {"steps": 7, "alpha": None}, "Kurakin et al. 2017; alpha = eps/7 as HoSNN"),
    "pgd7": AttackSpec(PGD, {"steps": 7, "alpha": 0.01, "random_start": True}, "Ding et al. 2022 / HoSNN"),
    "pgd20": AttackSpec(PGD, {"steps": 20, "alpha": 0.01, "random_start": True}, "HoSNN"),
    "pgd40": AttackSpec(PGD, {"steps": 40, "alpha": 0.01, "random_start": True}, "HoSNN"),
    "pgd10": AttackSpec(PGD, {"steps": 10, "alpha": 1.6 / 255, "random_start": True}, "RandHet-SNN (16/(255 k))"),
    "mifgsm": AttackSpec(MIFGSM, {"steps": 5, "alpha": 2 / 255, "decay": 1.0},
                         "Dong et al., CVPR 2018; settings of the RandHet-SNN code (its paper: decay 0.1)"),
    "apgd-ce": AttackSpec(APGD, {"loss": "ce", "steps": 100, "restarts": 1}, "Croce & Hein, ICML 2020"),
    "apgd-dlr": AttackSpec(APGD, {"loss": "dlr", "steps": 100, "restarts": 1}, "Croce & Hein, ICML 2020"),
    "apgd-t": AttackSpec(APGDT, {"steps": 100, "restarts": 1, "n_target_classes": 9}, "Croce & Hein, ICML 2020"),
    "gaussian": AttackSpec(GaussianNoise, {"std": 20 / 255},
                           "image-purification SNN paper, noise 'level 20' read as std 20/255"),
    "cw-pgd": AttackSpec(PGD, {"loss": "cw", "steps": 30, "alpha": 0.01, "random_start": True},
                         "Carlini & Wagner, S&P 2017 margin loss in L-inf PGD (Madry et al. 2018); alpha as pgd7"),
    "cw": AttackSpec(CW, {"c": 1.0, "kappa": 0.0, "steps": 50, "lr": 0.01, "binary_steps": 5},
                     "Carlini & Wagner, S&P 2017 (L2); 50 Adam steps of lr 0.01 as the image-purification paper"),
}

#: normalised spelling -> registered name
_BY_KEY = {name.replace("-", "").replace("_", ""): name for name in ATTACKS}


def _key(name: str) -> str | None:
    """The registered name that ``name`` spells (ignoring case, surrounding spaces, ``-``/``_``), or None."""
    if not isinstance(name, str):
        raise TypeError(f"attack names are strings; got {type(name).__name__}")
    return _BY_KEY.get(name.strip().lower().replace("-", "").replace("_", ""))


def make_attack(name: str, model: nn.Module, eps: float, **overrides: Any) -> Attack:
    """Build the registered attack ``name`` on ``model`` with budget ``eps`` (pixel units).

    ``overrides`` replace the registered settings or set base-class options (``eot``, ``surrogate``,
    ``targeted``, ``loss``). The returned attack's ``name`` is the registry name.

    >>> atk = make_attack("pgd7", model, eps=8/255, eot=10)   # doctest: +SKIP
    """
    key = _key(name)
    if key is None:
        raise unknown_name("attack", name, ATTACKS)
    spec = ATTACKS[key]
    try:
        attack = spec.cls(model, eps, **{**spec.settings, **overrides})
    except TypeError as e:
        raise ValueError(f"bad settings for attack {key!r} ({spec.cls.__name__}): {e}") from None
    attack.name = key
    return attack


def parse_attack_list(names: str | Iterable[str]) -> list[str]:
    """Turn ``"fgsm,pgd7"`` (or a list of names) into a list of registered names, in order, without repeats.

    Raises ``ValueError`` on an empty list or an unknown name (listing the valid ones).
    """
    items = names.split(",") if isinstance(names, str) else list(names)
    out: list[str] = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        key = _key(item)
        if key is None:
            raise unknown_name("attack", item.strip(), ATTACKS)
        if key not in out:
            out.append(key)
    if not out:
        raise ValueError(f"no attack given; choose from: {', '.join(sorted(ATTACKS))}")
    return out
