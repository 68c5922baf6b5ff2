"""Training configuration: typed, validated sections read from YAML (``load_config``), unknown keys are errors.

A config file has the sections ``model``, ``data``, ``optim`` and ``adversarial`` plus a few top-level keys; every
key has a default, so a file states only what differs. ``docs/training.md`` lists every key. Errors name the file,
the key and what is allowed::

    ValueError: config configs/x.yaml: key optim.lr: Input should be greater than 0
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from spikeshield.validation import parse_eps, unknown_name


class _Section(BaseModel):
    """Base of all config sections: unknown keys are errors and assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def _eps(value: Any) -> float:
    return parse_eps(value, "eps")


def _alpha(value: Any) -> float | None:
    return None if value is None else parse_eps(value, "alpha")


Eps = Annotated[float, BeforeValidator(_eps)]


class ModelSection(_Section):
    """The network: exactly the arguments of :func:`spikeshield.models.create_model` (``name: purifier`` builds the
    spiking purifier, :func:`spikeshield.defenses.purification.purifier`, from the same keys)."""

    name: str = "lenet"
    dataset: str = "fashion_mnist"
    neuron: str = "lif"
    encoder: str = "direct"
    T: int = Field(5, ge=1)
    synapse: Literal["default"] | Annotated[float, Field(gt=0)] | None = "default"
    neuron_params: dict[str, Any] = Field(default_factory=dict)
    encoder_params: dict[str, Any] = Field(default_factory=dict)
    ann: bool = False
    model_params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name", "neuron", "encoder")
    @classmethod
    def _registered(cls, v: str, info: ValidationInfo) -> str:
        from spikeshield.encoding import encoder_spec
        from spikeshield.models import model_names
        from spikeshield.neurons import NEURONS

        if info.field_name == "encoder":  # a registered name or an RSC preset (rsc1-0.1)
            encoder_spec(v)
            return v
        trainable = [name for name in model_names() if name != "pipeline"]  # pipelines: see purify
        kind, registry = {"name": ("model", trainable), "neuron": ("neuron", NEURONS)}[info.field_name]
        if v not in registry:
            raise unknown_name(kind, v, registry)
        return v

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        from spikeshield.data import dataset_info

        return dataset_info(v).name

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``create_model`` (``model_params`` spread out)."""
        args = self.model_dump(exclude={"model_params"})
        return {**args, **copy.deepcopy(self.model_params)}

    @model_validator(mode="after")
    def _builds(self) -> ModelSection:
        """Build the model on the meta device (no memory, no time) so bad parameters fail at load time."""
        import torch

        from spikeshield.models import build_model

        try:
            with torch.device("meta"):
                build_model(self.kwargs())
        except (TypeError, ValueError, NotImplementedError) as e:
            raise ValueError(f"the model section does not build: {e}") from None
        return self


class DataSection(_Section):
    """Where the data comes from and how it is batched."""

    data_dir: str | None = None
    download: bool = True
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int = Field(256, ge=1)
    augment: bool = False
    train_subset: int | None = Field(None, ge=1)
    eval_subset: int | None = Field(None, ge=1)


class OptimSection(_Section):
    """Optimiser, learning-rate schedule and gradient clipping."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    epochs: int = Field(20, ge=1)
    schedule: Literal["cosine", "constant"] = "cosine"
    grad_clip: float | None = Field(None, gt=0)
    rat_beta: float = Field(0.0, ge=0)  # RAT: orthogonal retraction of every weight after each step (0: off)
    amp: Literal["none", "bf16"] = "none"  # bf16: forward and backward under torch.autocast (neurons in float32)
    sync_batchnorm: bool = False  # under torchrun on CUDA: batch-norm statistics over every rank's share of a batch

    @model_validator(mode="after")
    def _nesterov(self) -> OptimSection:
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ValueError("nesterov: true needs name: sgd and momentum > 0")
        return self


class AdversarialSection(_Section):
    """Adversarial training: each training batch is replaced by adversarial examples of this attack."""

    attack: Literal["none", "fgsm", "rfgsm", "pgd"] = "none"
    eps: Eps = 0.0
    alpha: Annotated[float | None, BeforeValidator(_alpha)] = None
    steps: int = Field(7, ge=1)
    random_start: bool = True
    start: Eps = 0.0  # fgsm: radius of a uniform random start (RandHet-SNN's AT: eps / 10)
    generate_in: Literal["eval", "train"] = "eval"

    @model_validator(mode="after")
    def _budget(self) -> AdversarialSection:
        if self.attack != "none" and self.eps <= 0:
            raise ValueError(f"attack {self.attack!r} needs eps > 0 (pixel units, e.g. eps: 2/255)")
        return self


class HoSNNSection(_Section):
    """HoSNN (METHODS 1): the trained LIF network whose NDS the TA-LIF network gets before training."""

    nds_from: str | None = None
    warm_start: bool = False


class DistillSection(_Section):
    """Knowledge distillation from a trained ``teacher`` checkpoint (E-RSCT, METHODS 4: the ANN twin, trained first):
    the objective plus ``lam`` times ``KL(softmax(z_teacher / temperature) || softmax(z_student / temperature))
    temperature^2``. ``teacher: null`` distills nothing."""

    teacher: str | None = None
    lam: float = Field(0.1, ge=0)
    temperature: float = Field(1.0, gt=0)


class PurifySection(_Section):
    """Purifier training (METHODS 3): the model section describes the purifier, ``classifier`` is the trained
    classifier's checkpoint it goes in front of. The run trains ``Pipeline([purifier, classifier])`` with the
    classifier frozen, on the ``adversarial:`` section's examples crafted against the classifier alone (the paper:
    FGSM at 16/255), with the ``denoise`` objective; it saves the whole pipeline as its model."""

    classifier: str | None = None


class SelectSection(_Section):
    """Checkpoint selection on images held out of the training set (never the test set).

    ``holdout`` training images are set aside (not trained on); after each of the last ``last_epochs`` epochs (all,
    if None) the model is scored on them, clean or under ``attack`` (a registry name, e.g. ``pgd10``) at ``eps``
    with the decision rule, and the best epoch is kept in ``out_dir/selected``. ``holdout: 0`` selects nothing.
    """

    holdout: int = Field(0, ge=0)
    attack: str | None = None
    eps: Eps = 8 / 255
    eot: int | None = Field(None, ge=1)
    last_epochs: int | None = Field(None, ge=1)

    @field_validator("attack")
    @classmethod
    def _known_attack(cls, v: str | None) -> str | None:
        from spikeshield.attacks.registry import parse_attack_list

        if v is None:
            return None
        (name,) = parse_attack_list([v])
        return name


class TrainConfig(_Section):
    """One training run. ``TrainConfig()`` is a valid default (LeNet LIF T=5 on FashionMNIST, clean, 20 epochs)."""

    name: str | None = None
    seed: int = Field(0, ge=0)
    out_dir: str = "runs/train"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    objective: str = "ce"
    objective_params: dict[str, float | str] = Field(default_factory=dict)
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    adversarial: AdversarialSection = Field(default_factory=AdversarialSection)
    hosnn: HoSNNSection = Field(default_factory=HoSNNSection)
    select: SelectSection = Field(default_factory=SelectSection)
    distill: DistillSection = Field(default_factory=DistillSection)
    purify: PurifySection = Field(default_factory=PurifySection)

    @model_validator(mode="after")
    def _purifier_training(self) -> TrainConfig:
        purifying = self.purify.classifier is not None
        if purifying != (self.model.name == "purifier") or purifying != (self.objective == "denoise"):
            raise ValueError("purifier training needs all three of purify.classifier (the classifier's checkpoint), "
                             "model.name: purifier and objective: denoise; got "
                             f"purify.classifier={self.purify.classifier!r}, model.name={self.model.name!r}, "
                             f"objective={self.objective!r}")
        if purifying and self.distill.teacher is not None:
            raise ValueError("distill and purify cannot be combined: the purifier learns to denoise, not to classify")
        if self.objective == "ols" and self.distill.teacher is not None:
            raise ValueError("objective ols keeps per-epoch state that distillation's wrapper does not carry: use "
                             "objective ce or tet with distill")
        return self

    @model_validator(mode="after")
    def _hosnn_needs_talif(self) -> TrainConfig:
        h = self.hosnn
        if h.nds_from is not None and self.model.neuron != "talif":
            raise ValueError(f"hosnn.nds_from needs model.neuron: talif (got {self.model.neuron!r})")
        if h.warm_start and h.nds_from is None:
            raise ValueError("hosnn.warm_start starts from the weights of the hosnn.nds_from network: set nds_from")
        return self

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, v: str) -> str:
        from spikeshield.training.objectives import OBJECTIVES

        if v not in OBJECTIVES:
            raise unknown_name("objective", v, OBJECTIVES)
        return v

    @model_validator(mode="after")
    def _objective_params(self) -> TrainConfig:
        from spikeshield.training.objectives import get_objective

        get_objective(self.objective, **self.objective_params)
        return self


def _section_class(loc: tuple) -> type[BaseModel] | None:
    """The config class that holds the key at ``loc`` (to list the allowed keys of an unknown one)."""
    cls: type[BaseModel] = TrainConfig
    for part in loc[:-1]:
        field = cls.model_fields.get(str(part))
        sub = getattr(field, "annotation", None) if field else None
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return None
        cls = sub
    return cls


def _describe(error: dict) -> str:
    loc = tuple(error["loc"])
    key = ".".join(str(p) for p in loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        cls = _section_class(loc)
        allowed = f"; allowed keys here: {', '.join(cls.model_fields)}" if cls else ""
        return f"key {key}: unknown key{allowed}"
    msg = error["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return f"key {key}: {msg}"


def parse_config(data: dict[str, Any] | None, source: str = "<dict>") -> TrainConfig:
    """Validate a config mapping; raise ValueError ``config SOURCE: key a.b: message`` (one line per problem)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(
            f"config {source}: expected a mapping of sections (model:, data:, ...), got {type(data).__name__}"
        )
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        lines = [_describe(err) for err in e.errors()]
        raise ValueError(f"config {source}: " + "\n  ".join(lines)) from None


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted-key overrides applied, e.g. ``{"optim.epochs": 1, "seed": 3}``."""
    data = copy.deepcopy(data)
    for dotted, value in (overrides or {}).items():
        node = data
        parts = str(dotted).split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"override {dotted}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML training config (plus dotted-key ``overrides``) and validate it.

    Raises FileNotFoundError if the file is missing and ValueError ``config FILE: key a.b: message`` otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValueError(f"config {path}: not valid YAML ({e})") from None
    if isinstance(data, dict):
        data = apply_overrides(data, overrides)
    return parse_config(data, str(path))
