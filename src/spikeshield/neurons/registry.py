"""Neuron registry: ``create_model(neuron=NAME)`` resolves names here."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from spikeshield.neurons.lif import LIF, LIFParameters
from spikeshield.neurons.mlf import MLF, MLFParameters
from spikeshield.neurons.randhet import Het, RandHet, RandHetParameters
from spikeshield.neurons.synapse import PSC
from spikeshield.neurons.talif import TALIF, TALIFParameters
from spikeshield.validation import unknown_name

NeuronFactory = Callable[..., nn.Module]

NEURONS: dict[str, NeuronFactory] = {}


def register_neuron(name: str) -> Callable[[NeuronFactory], NeuronFactory]:
    """Decorator: register ``factory(shape, synapse, steps, **params) -> module`` under ``name``."""

    def wrap(factory: NeuronFactory) -> NeuronFactory:
        NEURONS[name] = factory
        return factory

    return wrap


def make_neuron(name: str, shape: tuple[int, ...], synapse: PSC | None = None, steps: int = 1, **params) -> nn.Module:
    """Build the neuron layer ``name`` for activations of per-sample ``shape`` over ``steps`` time steps (some neurons
    hold per-unit or per-step state, e.g. TA-LIF's ``theta_v`` and NDS), its spikes filtered by ``synapse`` if given."""
    if name not in NEURONS:
        raise unknown_name("neuron", name, NEURONS)
    try:
        return NEURONS[name](shape, synapse, steps, **params)
    except TypeError as e:
        raise ValueError(f"bad parameters for neuron {name!r}: {e}") from None


@register_neuron("lif")
def _lif(shape: tuple[int, ...], synapse: PSC | None, steps: int, **params) -> LIF:
    return LIF(LIFParameters(**params), synapse)


@register_neuron("talif")
def _talif(shape: tuple[int, ...], synapse: PSC | None, steps: int, **params) -> TALIF:
    return TALIF(shape, steps, TALIFParameters(**params), synapse)


@register_neuron("randhet")
def _randhet(shape: tuple[int, ...], synapse: PSC | None, steps: int, **params) -> RandHet:
    return RandHet(RandHetParameters(**params, per_step=True), synapse)


@register_neuron("randhet_fwd")
def _randhet_fwd(shape: tuple[int, ...], synapse: PSC | None, steps: int, **params) -> RandHet:
    return RandHet(RandHetParameters(**params, per_step=False), synapse)


@register_neuron("het")
def _het(shape: tuple[int, ...], synapse: PSC | None, steps: int, **params) -> Het:
    return Het(shape, synapse=synapse, **params)


@register_neuron("mlf")
def _mlf(shape: tuple[int, ...], synapse: PSC | None, steps: int, **params) -> MLF:
    return MLF(MLFParameters(**params), synapse)
