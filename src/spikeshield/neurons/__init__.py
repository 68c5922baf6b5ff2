"""Spiking neurons, surrogate gradients, PSC synapses, recording and the attacker's gradient modes."""

from spikeshield.neurons.base import SpikingNeuron
from spikeshield.neurons.gradients import (
    BACKWARD_MODES,
    BPTR,
    RGA,
    BackwardMode,
    RateParameters,
    active_mode,
    active_surrogate,
    gradient_mode,
    make_gradient,
    spike,
)
from spikeshield.neurons.lif import LIF, LIFParameters, lif_step
from spikeshield.neurons.randhet import Het, RandHet, RandHetParameters
from spikeshield.neurons.recording import Recording, record
from spikeshield.neurons.registry import NEURONS, make_neuron, register_neuron
from spikeshield.neurons.surrogate import (
    SURROGATES,
    ArcTan,
    Exponential,
    Rectangle,
    Sigmoid,
    StraightThrough,
    Surrogate,
    Triangle,
    make_surrogate,
)
from spikeshield.neurons.synapse import PSC, psc_kernel
from spikeshield.neurons.talif import TALIF, TALIFParameters

__all__ = [
    "BACKWARD_MODES", "BPTR", "LIF", "NEURONS", "PSC", "RGA", "SURROGATES", "ArcTan", "BackwardMode", "Exponential",
    "Het", "LIFParameters", "RandHet", "RandHetParameters", "RateParameters", "Recording", "Rectangle", "Sigmoid",
    "SpikingNeuron", "StraightThrough", "Surrogate", "TALIF", "TALIFParameters", "Triangle", "active_mode",
    "active_surrogate", "gradient_mode", "lif_step", "make_gradient", "make_neuron", "make_surrogate", "psc_kernel",
    "record", "register_neuron", "spike",
]
