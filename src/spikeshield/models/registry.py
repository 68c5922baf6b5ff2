"""Model registry and factory (timm style): ``create_model("lenet", dataset=..., neuron=..., encoder=..., T=...)``."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from spikeshield.data.info import dataset_info
from spikeshield.encoding import make_encoder
from spikeshield.models.layers import Parts
from spikeshield.models.spiking_model import SpikingModel
from spikeshield.neurons.surrogate import Surrogate, surrogate_name
from spikeshield.validation import unknown_name

MODELS: dict[str, Callable[..., nn.Sequential]] = {}
DEFAULT_SYNAPSE: dict[str, float | None] = {}
#: whole-model builders that are not classifier bodies (``purifier``, ``pipeline``): ``builder(**config) -> module``
BUILDERS: dict[str, Callable[..., nn.Module]] = {}
#: builders registered by modules outside the core, imported on first use (the core never imports the adapters)
PLUGIN_BUILDERS: dict[str, str] = {"nir": "spikeshield.adapters.nir"}


def register_model(name: str, synapse: float | None = None) -> Callable:
    """Decorator: register ``builder(info, parts, **model_params) -> body`` under ``name``.

    ``synapse`` is the model's default PSC time constant (None: spikes feed the next layer directly).
    """

    def wrap(builder: Callable[..., nn.Sequential]) -> Callable[..., nn.Sequential]:
        MODELS[name] = builder
        DEFAULT_SYNAPSE[name] = synapse
        return builder

    return wrap


def register_builder(name: str) -> Callable:
    """Decorator: register ``builder(**config) -> module`` (a model with a ``config`` that rebuilds it) under
    ``name``, for models that are not a classifier body (a purifier, a pipeline of stages)."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        BUILDERS[name] = builder
        return builder

    return wrap


def model_names() -> list[str]:
    """Every name :func:`build_model` accepts."""
    return sorted({*MODELS, *BUILDERS, *PLUGIN_BUILDERS})


def build_model(config: dict[str, Any]) -> nn.Module:
    """The model a ``config`` (a model's ``.config``, as checkpoints store it) describes: :func:`create_model` for
    the registered classifiers, the registered builder for the others (``purifier``, ``pipeline``)."""
    if not isinstance(config, dict) or not isinstance(config.get("name"), str):
        raise ValueError(f"a model config is a dict with a 'name'; got {config!r}")
    name = config["name"]
    if name in MODELS:
        return create_model(**config)
    if name not in BUILDERS and name in PLUGIN_BUILDERS:
        importlib.import_module(PLUGIN_BUILDERS[name])  # registers the builder
    if name in BUILDERS:
        return BUILDERS[name](**config)
    raise unknown_name("model", name, model_names())


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready copy of neuron parameters (surrogate instances become ``{"name": ..., ...}``)."""
    return {
        k: {"name": surrogate_name(v), **dataclasses.asdict(v)} if isinstance(v, Surrogate) else v
        for k, v in params.items()
    }


def init_weights(body: nn.Module) -> None:
    """He-normal weights (fan-in, ReLU gain) and zero biases for every conv and linear layer.

    PyTorch's default init (uniform, variance 1/(3 fan-in)) leaves a LIF LeNet almost silent at threshold 1 (about
    0.1% of the third layer's neurons fire at T = 5, none at T = 2), so its output does not depend on the input and
    short-T models never start learning; He init gives firing rates of 5-20%. The ANN twin gets the same init.
    """
    for module in body.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def create_model(
    name: str,
    dataset: str = "fashion_mnist",
    neuron: str = "lif",
    encoder: str = "direct",
    T: int = 5,
    ann: bool | str = False,
    synapse: float | str | None = "default",
    neuron_params: dict[str, Any] | None = None,
    encoder_params: dict[str, Any] | None = None,
    **model_params: Any,
):
    """Build a registered model.

    Args:
        name: model name (``lenet``, ``vgg5``, ``vgg9``, ``vgg11``, ``vgg16``, ``resnet19``, ``sew_resnet19``,
            ``resnet20``, ``resnet14``, ``senet18``, ``wrn16_8``).
        dataset: sets input shape, classes and the normalisation inside the model.
        neuron: neuron name in :data:`spikeshield.neurons.NEURONS`; ``neuron_params`` are passed to it
            (e.g. ``{"tau_m": 5, "surrogate": "sigmoid"}``).
        encoder: ``direct``, ``poisson``, ``rsc1`` or ``rsc2``; ``encoder_params`` e.g. ``{"std": 0.3}``.
        T: number of time steps.
        ann: build the ANN twin: ReLU (True or ``"relu"``) or the quantised clamp (``"clamp"``) instead of neurons,
            no synapse filter, T = 1, direct coding.
        synapse: PSC time constant tau_s, None for no synapse filter, or ``"default"``, the model's own
            (3 for ``lenet``, none for the VGGs).
        model_params: extra arguments of the model builder (e.g. ``hidden=1024`` for the VGGs, ``width=0.25``).

    >>> model = create_model("lenet", dataset="fashion_mnist", neuron="lif", encoder="direct", T=5)
    """
    if name not in MODELS:
        raise unknown_name("model", name, MODELS)
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T (time steps) must be a positive integer; got {T!r}")
    info = dataset_info(dataset)
    neuron_params = _plain(neuron_params or {})
    if synapse == "default":
        synapse = DEFAULT_SYNAPSE[name]
    if ann not in (False, True, "relu", "clamp"):
        raise ValueError(f"ann must be False, True / 'relu' or 'clamp'; got {ann!r}")
    if ann:
        encoder, T = "direct", 1
    builder = MODELS[name]
    allowed = set(inspect.signature(builder).parameters) - {"info", "parts"}
    if set(model_params) - allowed:
        raise ValueError(f"model {name!r} takes no parameter(s) {sorted(set(model_params) - allowed)}; "
                         f"it takes {sorted(allowed) or 'none'}")
    parts = Parts(neuron=neuron, neuron_params=neuron_params, ann=ann, tau_s=synapse, steps=T)
    body = builder(info, parts, **model_params)
    init_weights(body)
    config = dict(name=name, dataset=info.name, neuron=neuron, encoder=encoder, T=T, ann=ann, synapse=synapse,
                  neuron_params=neuron_params, encoder_params=dict(encoder_params or {}), **model_params)
    return SpikingModel(body, info, make_encoder(encoder, **(encoder_params or {})), T, config)
