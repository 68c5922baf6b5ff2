"""Models: ``create_model(name, dataset=..., neuron=..., encoder=..., T=...)`` and the registered networks."""

from spikeshield.models import lenet, preact, resnet, vgg  # noqa: F401  (registers the models)
from spikeshield.models.ann import ann_twin
from spikeshield.models.registry import MODELS, create_model, register_model
from spikeshield.models.spiking_model import SpikingModel

__all__ = ["MODELS", "SpikingModel", "ann_twin", "create_model", "register_model"]
