"""Models: ``create_model(name, dataset=..., neuron=..., encoder=..., T=...)`` and the registered networks."""

from spikeshield.models import lenet, preact, resnet, vgg  # noqa: F401  (registers the models)
from spikeshield.models.ann import ann_twin
from spikeshield.models.pipeline import Pipeline
from spikeshield.models.registry import (
    BUILDERS,
    MODELS,
    build_model,
    create_model,
    model_names,
    register_builder,
    register_model,
)
from spikeshield.models.spiking_model import SpikingModel

__all__ = ["BUILDERS", "MODELS", "Pipeline", "SpikingModel", "ann_twin", "build_model", "create_model", "model_names",
           "register_builder", "register_model"]
