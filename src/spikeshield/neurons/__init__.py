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
from spikeshield.neurons.mlf import MLF, MLFParameters, mlf_step
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
    "ArcTan", "BACKWARD_MODES", "BPTR", "BackwardMode", "Exponential", "Het", "LIF", "LIFParameters", "MLF",
    "MLFParameters", "NEURONS", "PSC", "RGA", "RandHet", "RandHetParameters", "RateParameters", "Recording",
    "Rectangle", "SURROGATES", "Sigmoid", "SpikingNeuron", "StraightThrough", "Surrogate", "TALIF", "TALIFParameters",
    "Triangle", "active_mode", "active_surrogate", "gradient_mode", "lif_step", "make_gradient", "make_neuron",
    "make_surrogate", "mlf_step", "psc_kernel", "record", "register_neuron", "spike",
]
