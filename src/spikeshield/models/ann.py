"""The ANN twin of a spikeshield model: same weights, a rate activation in place of every spiking neuron (METHODS 7).

Used by the attacker's ANN-twin gradient (SNN-RAT's "activation attack"): the SNN gives every value, the twin's
backward the gradient (``spikeshield.attacks.with_ann_gradients``); also usable as a transfer source.
"""

from __future__ import annotations

from torch import nn

from spikeshield.models.layers import QuantisedClamp
from spikeshield.models.registry import build_model, model_names

__all__ = ["ANN_ACTIVATIONS", "QuantisedClamp", "ann_twin"]

#: the twin's activations: ReLU (SNN-RAT) or the quantised clamp of the RGA / HART code
ANN_ACTIVATIONS = ("relu", "clamp")


def ann_twin(model: nn.Module, activation: str = "relu") -> nn.Module:
    """A fresh ANN twin of ``model`` carrying a copy of its weights.

    A model with an ``ann_twin(activation)`` method (a wrapped foreign network) builds its own. Otherwise the twin
    is ``build_model({**model.config, "ann": activation})`` (a pipeline's twin is the pipeline of its
    stages' twins): every neuron becomes a ReLU (``"relu"``) or a
    :class:`QuantisedClamp` (``"clamp"``), every synapse the identity, ``T = 1`` with direct coding. Parameters and
    buffers are copied from ``model`` (parameter names are shared; the neurons' own parameters, which the twin lacks,
    are skipped). It is put on ``model``'s device and dtype and in its train/eval mode. The copy is a snapshot: later
    changes to ``model``'s weights do not reach it.

    Raises ``ValueError`` for a model without a spikeshield ``config`` (one not built by :func:`create_model`)
    or whose weights do not fit the twin.

    >>> twin = ann_twin(model)      # doctest: +SKIP
    >>> twin(x).shape               # [B, classes]  # doctest: +SKIP
    """
    own = getattr(model, "ann_twin", None)
    if callable(own):  # a model that builds its own twin (spikeshield.adapters.WrappedModel)
        return own(activation)
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or config.get("name") not in model_names():
        raise ValueError(f"ann_twin needs a spikeshield model built by create_model (it rebuilds the twin from "
                         f"model.config); {type(model).__name__} has no such config")
    try:
        twin = build_model({**config, "ann": activation})
    except (TypeError, ValueError) as e:
        raise ValueError(f"cannot rebuild the ANN twin of {type(model).__name__} from its config ({e}); "
                         f"ann_twin works on plain create_model models") from None
    tensors = [*model.parameters(), *model.buffers()]
    if tensors:
        floating = next((t for t in tensors if t.is_floating_point()), tensors[0])
        twin = twin.to(device=floating.device, dtype=floating.dtype)
    try:
        result = twin.load_state_dict(model.state_dict(), strict=False)
    except RuntimeError as e:
        raise ValueError(f"the weights of {type(model).__name__} do not fit its ANN twin: {e}") from None
    if result.missing_keys:
        raise ValueError(f"the ANN twin of {type(model).__name__} has weights the model lacks: "
                         f"{result.missing_keys[:5]}; was the model changed after create_model?")
    return twin.train(model.training)
