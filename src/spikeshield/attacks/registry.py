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
sapgd      SAPGD   100           eps, auto     Wang et al. 2025 (SA-PGD); CE loss, 1 restart
sapgd-dlr  SAPGD   100           eps, auto     Wang et al. 2025 (SA-PGD); DLR loss, 1 restart
gaussian   Gauss.  0             -             purification paper's "level 20" noise: std 20/255
cw-pgd     PGD     30            0.01          PGD with the CW margin loss (Carlini & Wagner 2017); random start
cw         CW      50 x 5        Adam lr 0.01  Carlini & Wagner 2017, L2; c = 1, 5 binary-search rounds (purif. paper)
square     Square  5000 queries  p_init 0.8    Andriushchenko et al. 2020; score-based, no gradients (AutoAttack)
fab        FAB     100           -             Croce & Hein 2020; untargeted, 1 restart
fab-t      FAB     100 x 9       -             Croce & Hein 2020; targeted, top-9 other classes (AutoAttack)
=========  ======  ============  ============  =======================================================

Names are matched ignoring case, surrounding spaces, ``-`` and ``_`` (``APGD_CE``, ``pgd-7``); the registered
spelling is the attack's ``name``.

Gradient suffix (METHODS 7): ``name@gradient`` runs the attack with ``grad=gradient``: a surrogate
(``pgd7@triangle``), a rate-based mode (``pgd7@rga``, ``pgd7@bptr``), the ANN twin (``apgd-ce@ann``) or ``own``;
numeric parameters follow in field order after ``-`` or ``:`` (``pgd7@triangle-0.5``, ``pgd7@exponential-0.3-2``
is ``a = 0.3, g = 2``). The canonical spelling (``pgd7@triangle-0.5``) is the attack's ``name``; the suffix takes
precedence over a ``grad=`` override (so ``evaluate(..., grad=...)`` applies to the unsuffixed names).
:data:`GRADIENT_VARIANTS` lists the 19 gradients of Özdenizci & Legenstein (TMLR 2024) and
:func:`adaptive_attacks` builds one attack per variant, for a per-sample worst case over gradients.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from spikeshield.attacks.apgd import APGD, APGDT
from spikeshield.attacks.base import Attack
from spikeshield.attacks.bim import BIM
from spikeshield.attacks.cw import CW
from spikeshield.attacks.fab import FAB
from spikeshield.attacks.fgsm import FGSM
from spikeshield.attacks.mifgsm import MIFGSM
from spikeshield.attacks.noise import GaussianNoise
from spikeshield.attacks.pgd import PGD
from spikeshield.attacks.rfgsm import RFGSM
from spikeshield.attacks.sapgd import SAPGD
from spikeshield.attacks.square import Square
from spikeshield.neurons.gradients import (
    BACKWARD_MODES,
    MODEL_GRADIENTS,
    gradient_name,
    gradient_names,
    make_gradient,
)
from spikeshield.neurons.surrogate import SURROGATES
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
    "sapgd": AttackSpec(SAPGD, {"loss": "ce", "steps": 100, "restarts": 1},
                        "Wang et al., arXiv 2512.22522 (2025), SA-PGD; METHODS 7"),
    "sapgd-dlr": AttackSpec(SAPGD, {"loss": "dlr", "steps": 100, "restarts": 1},
                            "SA-PGD (Wang et al. 2025) with the DLR loss of Croce & Hein, ICML 2020"),
    "gaussian": AttackSpec(GaussianNoise, {"std": 20 / 255},
                           "image-purification SNN paper, noise 'level 20' read as std 20/255"),
    "cw-pgd": AttackSpec(PGD, {"loss": "cw", "steps": 30, "alpha": 0.01, "random_start": True},
                         "Carlini & Wagner, S&P 2017 margin loss in L-inf PGD (Madry et al. 2018); alpha as pgd7"),
    "cw": AttackSpec(CW, {"c": 1.0, "kappa": 0.0, "steps": 50, "lr": 0.01, "binary_steps": 5},
                     "Carlini & Wagner, S&P 2017 (L2); 50 Adam steps of lr 0.01 as the image-purification paper"),
    "square": AttackSpec(Square, {"n_queries": 5000, "p_init": 0.8, "restarts": 1},
                         "Andriushchenko et al., ECCV 2020; AutoAttack's settings"),
    "fab": AttackSpec(FAB, {"steps": 100, "restarts": 1, "n_target_classes": 0}, "Croce & Hein, ICML 2020"),
    "fab-t": AttackSpec(FAB, {"steps": 100, "restarts": 1, "n_target_classes": 9},
                        "Croce & Hein, ICML 2020; AutoAttack's FAB-T"),
}

@dataclass(frozen=True)
class SuiteSpec:
    """A registered attack suite: ``build(model, eps, **options)`` and the AutoAttack version or snn-adaptive preset
    the name spells."""

    build: Callable[..., Attack]
    version: str


#: suite names -> their spec; filled by the modules that define suites (``ensemble``: AutoAttack, ``adaptive``:
#: snn-adaptive) through :func:`register_suite`, so this module imports none of them
SUITES: dict[str, SuiteSpec] = {}


def register_suite(name: str, build: Callable[..., Attack], version: str) -> None:
    """Register a suite under ``name`` (lower case, ``-`` separated) for :func:`make_attack` and ``evaluate``."""
    SUITES[name] = SuiteSpec(build, version)


def _suite_key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def suite_version(name: str) -> str | None:
    """The version or preset a suite name spells (``"autoattack-rand"`` -> ``"rand"``), or None if not a suite."""
    spec = SUITES.get(_suite_key(name))
    return spec.version if spec is not None else None


def make_suite(name: str, model: nn.Module, eps: float, **options: Any) -> Attack:
    """Build the suite ``name`` (a key of :data:`SUITES`, any case, ``_`` or ``-``); ``options`` go to its constructor.

    >>> suite = make_suite("snn-adaptive-quick", model, 8/255)   # doctest: +SKIP
    """
    spec = SUITES.get(_suite_key(name))
    if spec is None:
        raise unknown_name("attack suite", name, SUITES)
    return spec.build(model, eps, **options)


#: normalised spelling -> registered name
_BY_KEY = {name.replace("-", "").replace("_", ""): name for name in ATTACKS}


def _key(name: str) -> str | None:
    """The registered name that ``name`` spells (ignoring case, surrounding spaces, ``-``/``_``), or None."""
    if not isinstance(name, str):
        raise TypeError(f"attack names are strings; got {type(name).__name__}")
    return _BY_KEY.get(name.strip().lower().replace("-", "").replace("_", ""))


#: The 19 attacker gradients of Özdenizci & Legenstein (TMLR 2024; METHODS 7), each a ``grad=`` value:
#: triangle g in {0.25, 0.5, 1, 2, 3}; exponential a in {0.3, 1} x g in {0.5, 1, 2}; rectangle width in
#: {0.25, 0.5, 1, 2, 4}; straight-through; BPTR; the ANN twin.
GRADIENT_VARIANTS: tuple[str | dict[str, Any], ...] = (
    *({"name": "triangle", "gamma": g} for g in (0.25, 0.5, 1.0, 2.0, 3.0)),
    *({"name": "exponential", "a": a, "g": g} for a in (0.3, 1.0) for g in (0.5, 1.0, 2.0)),
    *({"name": "rectangle", "a": w} for w in (0.25, 0.5, 1.0, 2.0, 4.0)),
    "straight_through",
    "bptr",
    "ann",
)

#: normalised spelling -> gradient name (``straight-through`` -> ``straight_through``)
_GRADIENT_KEYS = {name.replace("_", "").replace("-", ""): name for name in gradient_names()}


def _number(value: float) -> str:
    """Shortest spelling of a parameter that reads back to the same float."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def _gradient_fields(name: str) -> list[str]:
    """Parameter names, in order, of the gradient ``name`` (none for ``own``, ``ann``, ``straight_through``)."""
    cls = SURROGATES.get(name) or BACKWARD_MODES.get(name)
    return [f.name for f in dataclasses.fields(cls) if f.init] if cls is not None else []


def parse_gradient(text: str) -> tuple[str, str | dict[str, float]]:
    """A gradient suffix (``"triangle-0.5"``, ``"RGA"``, ``"straight-through"``) -> ``(canonical label, spec)``.

    ``spec`` is a ``grad=`` value: the name alone, or ``{"name": ..., field: value}`` with the numbers given
    in field order. Raises ``ValueError`` on an unknown name (listing the valid ones) or bad numbers.
    """
    tokens = text.strip().lower().replace(":", "-").split("-")
    if "" in tokens:
        raise ValueError(f"bad gradient {text!r}: separate the name and its (positive) numbers by one '-' or ':'")
    words: list[str] = []
    numbers: list[float] = []
    for token in tokens:
        try:
            numbers.append(float(token))
        except ValueError:
            if numbers:
                raise ValueError(f"bad gradient {text!r}: write the name, then its numbers "
                                 f"(e.g. 'triangle-0.5', 'exponential-0.3-2')") from None
            words.append(token)
    name = _GRADIENT_KEYS.get("".join(words).replace("_", ""))
    if name is None:
        raise unknown_name("surrogate or gradient mode", text.strip(), gradient_names())
    fields = _gradient_fields(name)
    if len(numbers) > len(fields):
        raise ValueError(f"gradient {name!r} takes {len(fields)} parameter(s) {fields}; got {text!r}")
    if not numbers:
        return name, name
    params = dict(zip(fields, numbers, strict=False))
    make_gradient({"name": name, **params})  # check the values now, with the gradient's own error
    return "-".join([name, *map(_number, numbers)]), {"name": name, **params}


def gradient_label(spec: Any) -> str:
    """The suffix spelling of a ``grad=`` value: a name stays a name, a dict or instance lists every field.

    >>> gradient_label({"name": "exponential", "a": 0.3, "g": 2.0})
    'exponential-0.3-2'
    """
    if spec is None or spec == "own":
        return "own"
    if isinstance(spec, str):
        return parse_gradient(spec)[0]
    if isinstance(spec, dict) and spec.get("name") in MODEL_GRADIENTS:
        return spec["name"]
    gradient = make_gradient(spec)
    name = gradient_name(gradient)
    return "-".join([name, *(_number(getattr(gradient, f)) for f in _gradient_fields(name))])


def _split(name: str) -> tuple[str, str | None, Any]:
    """``"PGD-7@Triangle:0.5"`` -> ``("pgd7", "triangle-0.5", spec)``; no suffix -> ``(key, None, None)``."""
    if not isinstance(name, str):
        raise TypeError(f"attack names are strings; got {type(name).__name__}")
    base, at, suffix = name.partition("@")
    key = _key(base)
    if key is None:
        raise unknown_name("attack", base.strip(), ATTACKS)
    if not at:
        return key, None, None
    label, spec = parse_gradient(suffix)
    return key, label, spec


def make_attack(name: str, model: nn.Module, eps: float, **overrides: Any) -> Attack:
    """Build the registered attack ``name`` on ``model`` with budget ``eps`` (pixel units).

    ``overrides`` replace the registered settings or set base-class options (``eot``, ``grad``,
    ``targeted``, ``loss``). ``name`` may carry a gradient suffix (``"pgd7@rga"``, ``"pgd7@triangle-0.5"``), which
    sets ``grad`` and takes precedence over a ``grad`` override. The returned attack's ``name`` is the
    registry name, with the canonical suffix if one was given.

    A suite name (``"autoattack"``, ``"snn-adaptive"``, ``"snn-adaptive-quick"``; :data:`SUITES`) builds
    that suite, ``overrides`` going to its constructor.

    >>> atk = make_attack("pgd7", model, eps=8/255, eot=10)   # doctest: +SKIP
    >>> atk = make_attack("pgd7@rga", model, eps=8/255)       # atk.name == "pgd7@rga"   # doctest: +SKIP
    >>> suite = make_attack("snn-adaptive", model, eps=8/255)  # every SNN gradient, worst case  # doctest: +SKIP
    """
    if isinstance(name, str) and suite_version(name) is not None:
        return make_suite(name, model, eps, **overrides)
    key, label, gradient = _split(name)
    if label is not None:
        overrides["grad"] = gradient
    spec = ATTACKS[key]
    try:
        attack = spec.cls(model, eps, **{**spec.settings, **overrides})
    except TypeError as e:
        raise ValueError(f"bad settings for attack {key!r} ({spec.cls.__name__}): {e}") from None
    attack.name = key if label is None else f"{key}@{label}"
    return attack


def adaptive_attacks(base_name: str, model: nn.Module, eps: float, variants: Sequence[Any] | None = None,
                     **overrides: Any) -> list[Attack]:
    """One ``base_name`` attack per gradient variant, named ``"<base>@<gradient>"`` (``pgd7@triangle-0.5``).

    Args:
        base_name: a registered attack without a gradient suffix (``"pgd7"``, ``"apgd-ce"``).
        model, eps: as :func:`make_attack`.
        variants: ``grad=`` values (names, dicts, instances, ``"bptr"``, ``"rga"``, ``"ann"``); default
            :data:`GRADIENT_VARIANTS`, the 19 of Özdenizci & Legenstein.
        overrides: settings for every attack (not ``grad``).

    Pass the list to :func:`spikeshield.evaluation.evaluate` for the per-sample worst case over gradients:

    >>> evaluate(model, x, y, attacks=adaptive_attacks("pgd7", model, 8/255), eps=8/255)   # doctest: +SKIP
    """
    if "@" in base_name:
        raise ValueError(f"adaptive_attacks takes an attack name without a gradient suffix; got {base_name!r}")
    if "grad" in overrides:
        raise ValueError("adaptive_attacks sets the gradient of each attack from `variants`; do not pass grad=")
    variants = GRADIENT_VARIANTS if variants is None else list(variants)
    if not variants:
        raise ValueError("adaptive_attacks needs at least one gradient variant")
    labels = [gradient_label(v) for v in variants]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"gradient variants repeat: {repeated}")
    attacks = []
    for label, variant in zip(labels, variants, strict=True):
        attack = make_attack(base_name, model, eps, grad=variant, **overrides)
        attack.name = f"{attack.name}@{label}"
        attacks.append(attack)
    return attacks


def parse_attack_list(names: str | Iterable[str]) -> list[str]:
    """Turn ``"fgsm,pgd7@rga"`` (or a list of names) into a list of registered names, in order, without repeats.

    A gradient suffix is kept, in its canonical spelling (``PGD-7@RGA`` -> ``pgd7@rga``). Raises ``ValueError``
    on an empty list or an unknown name (listing the valid ones).
    """
    items = names.split(",") if isinstance(names, str) else list(names)
    out: list[str] = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        key, label, _ = _split(item)
        key = key if label is None else f"{key}@{label}"
        if key not in out:
            out.append(key)
    if not out:
        raise ValueError(f"no attack given; choose from: {', '.join(sorted(ATTACKS))}")
    return out
