"""Composed models: stages in order (e.g. a purifier, then a classifier) as one model (DESIGN 1's purifier stage).

A :class:`Pipeline` is a model like any other: pixel images in, class scores out, ``forward_steps`` from its last
stage, ``is_stochastic`` if any stage is, a ``config`` that rebuilds it (so it checkpoints and loads as one
directory with :mod:`spikeshield.checkpoint`), and its ``info`` is its classifier's. Evaluations, audits and transfer
attacks treat it as one model: attacks differentiate through every stage unless told otherwise.

The attacker chooses each stage's backward (DESIGN 6): :meth:`Pipeline.with_gradient` gives a view of the same
modules in which one named stage back-propagates through a gradient mode (``"rga"``, ``"triangle"``, ...), through
its ANN twin (``"ann"``, ``"ann-clamp"``) or through BPDA's identity (``"bpda"``, for image-to-image stages). A mode
passed to the attack (``Attack(grad=...)``) reaches every stage; a stage's own choice wins inside that stage.

>>> pipeline = Pipeline([("purifier", purifier), ("classifier", classifier)])          # doctest: +SKIP
>>> PGD(pipeline.with_gradient("purifier", "bpda"), eps=8/255)(x, y)                   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from spikeshield.models.registry import build_model, register_builder
from spikeshield.neurons.gradients import (
    MODEL_GRADIENTS,
    BackwardMode,
    Gradient,
    gradient_mode,
    gradient_name,
    make_gradient,
    mode_parameters,
)

#: the stage backward that keeps the stage's value and passes the gradient straight through (identity)
BPDA_GRADIENT = "bpda"


def _gradient_record(gradient: str | Gradient) -> str | dict:
    """A JSON-ready record of a stage's backward choice (for the pipeline's ``config``)."""
    if isinstance(gradient, str):
        return gradient
    if isinstance(gradient, BackwardMode):
        return {"name": gradient.name, **mode_parameters(gradient)}
    return {"name": gradient_name(gradient), **dataclasses.asdict(gradient)}


class Pipeline(nn.Module):
    """Stages applied in order; the last one is the classifier (``forward_steps``: ``[T, B, classes]``).

    Args:
        stages: ``(name, module)`` pairs in order (or a dict). Every stage but the last maps images
            ``[B, C, H, W]`` in [0, 1] to images of the same kind; the last is a classifier.
        frozen: names of stages that are not trained: their parameters get no gradient and they stay in eval mode
            when the pipeline is put in training mode (e.g. the classifier while its purifier learns).
        gradients: per stage, the backward the attacker uses in it (see :meth:`with_gradient`).

    The pipeline starts in the mode of its trainable stages (eval if they all are) and changes none.
    """

    def __init__(self, stages: Iterable[tuple[str, nn.Module]] | dict[str, nn.Module],
                 frozen: Iterable[str] = (), gradients: dict[str, Any] | None = None) -> None:
        super().__init__()
        pairs = list(stages.items() if isinstance(stages, dict) else stages)
        if not pairs:
            raise ValueError("a Pipeline needs at least one stage")
        names = [name for name, _ in pairs]
        if len(set(names)) != len(names):
            raise ValueError(f"Pipeline stage names must be unique; got {names}")
        for name, module in pairs:
            if not isinstance(module, nn.Module):
                raise TypeError(f"Pipeline stage {name!r} must be an nn.Module; got {type(module).__name__}")
        if not hasattr(pairs[-1][1], "forward_steps"):
            raise TypeError(f"the last Pipeline stage ({names[-1]!r}) must be a classifier with forward_steps(x)")
        self.stages = nn.ModuleDict(pairs)
        self.frozen = tuple(self._known(name) for name in frozen)
        for name in self.frozen:
            self.stages[name].requires_grad_(False).eval()
        # report the stages' mode (a wrapper changes no mode): training if any trainable stage is
        self.training = any(stage.training for name, stage in pairs if name not in self.frozen)
        self.gradients: dict[str, str | Gradient] = {}
        self._twins: dict[str, nn.Module] = {}  # ANN twins of stages using "ann" gradients (not part of the weights)
        for name, gradient in (gradients or {}).items():
            self._set_gradient(name, gradient)

    def _known(self, name: str) -> str:
        if name not in self.stages:
            raise ValueError(f"the pipeline has no stage {name!r}; its stages are {list(self.stages)}")
        return name

    # ------------------------------------------------------------------------------------------ model interface
    @property
    def classifier(self) -> nn.Module:
        """The last stage."""
        return self.stages[list(self.stages)[-1]]

    @property
    def info(self) -> Any:
        """The classifier's :class:`~spikeshield.data.info.DatasetInfo`."""
        return getattr(self.classifier, "info", None)

    @property
    def num_classes(self) -> int | None:
        """Number of classes of the classifier."""
        return getattr(self.info, "num_classes", None)

    @property
    def is_stochastic(self) -> bool:
        """True if any stage draws random numbers in its forward pass."""
        return any(bool(getattr(stage, "is_stochastic", False)) for stage in self.stages.values())

    @property
    def config(self) -> dict[str, Any]:
        """The arguments that rebuild the pipeline (:func:`~spikeshield.models.build_model`): each stage's config."""
        config: dict[str, Any] = {"name": "pipeline", "dataset": getattr(self.info, "name", None),
                                  "stages": [[name, getattr(stage, "config", None)] for name, stage in
                                             self.stages.items()]}
        if self.frozen:
            config["frozen"] = list(self.frozen)
        if self.gradients:
            config["gradients"] = {name: _gradient_record(g) for name, g in self.gradients.items()}
        return config

    def stage(self, name: str) -> nn.Module:
        """The stage called ``name``."""
        return self.stages[self._known(name)]

    def train(self, mode: bool = True) -> Pipeline:
        """Set training mode on every stage except the frozen ones, which stay in eval mode."""
        super().train(mode)
        for name in self.frozen:
            self.stages[name].eval()
        return self

    def forward_steps(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step class scores ``[T, B, classes]``: every stage in order, the classifier's ``forward_steps`` last."""
        *front, last = self.stages.items()
        for name, stage in front:
            x = self._run(name, stage, x)
        return self._run(last[0], last[1], x, steps=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores ``[B, classes]``: the time average of :meth:`forward_steps`."""
        return self.forward_steps(x).mean(0)

    def upto(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """The output of the stages up to and including ``name`` for images ``x`` (e.g. the purified images)."""
        self._known(name)
        for stage_name, stage in self.stages.items():
            x = self._run(stage_name, stage, x)
            if stage_name == name:
                return x
        raise AssertionError("unreachable")

    # ----------------------------------------------------------------------------------- the attacker's backward
    def with_gradient(self, stage: str, gradient: str | dict | Gradient | None) -> Pipeline:
        """A view of this pipeline (the same modules and weights) in which ``stage`` back-propagates through
        ``gradient``: a surrogate or backward mode (as ``Attack(grad=...)``), ``"ann"`` / ``"ann-clamp"`` (the
        stage's ANN twin, BPDA-style), ``"bpda"`` (identity backward; image-to-image stages only) or None / ``"own"``
        (the stage's own). Values are unchanged in every case."""
        gradients = {**self.gradients}
        gradients.pop(self._known(stage), None)
        view = Pipeline(list(self.stages.items()), self.frozen, gradients)
        view._set_gradient(stage, gradient)
        return view.train(self.training)

    def _set_gradient(self, name: str, gradient: Any) -> None:
        self._known(name)
        label = gradient.get("name") if isinstance(gradient, dict) else gradient
        if gradient is None or label == "own":
            return
        if label == BPDA_GRADIENT:
            if name == list(self.stages)[-1]:
                raise ValueError(f"'bpda' (identity backward) needs an image-to-image stage; {name!r} is the "
                                 f"classifier: give it a gradient mode or 'ann'")
            self.gradients[name] = BPDA_GRADIENT
        elif label in MODEL_GRADIENTS:
            from spikeshield.models.ann import ann_twin

            self._twins[name] = ann_twin(self.stages[name], "clamp" if label == "ann-clamp" else "relu")
            self.gradients[name] = label
        else:
            self.gradients[name] = make_gradient(gradient)

    def _run(self, name: str, stage: nn.Module, x: torch.Tensor, steps: bool = False) -> torch.Tensor:
        """One stage on ``x`` under that stage's backward choice (its output, or ``forward_steps`` if ``steps``)."""
        def call(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
            return module.forward_steps(inputs) if steps else module(inputs)

        gradient = self.gradients.get(name)
        if gradient is None:
            return call(stage, x)
        if isinstance(gradient, str):  # "bpda" or an ANN twin: the stage's value, another function's gradient
            with torch.no_grad():
                value = call(stage, x)
            proxy = x if gradient == BPDA_GRADIENT else call(self._twins[name], x)
            if steps and proxy.shape != value.shape:  # the twin runs one step: broadcast its scores over T
                proxy = proxy.expand_as(value)
            return value + (proxy - proxy.detach())
        with gradient_mode(gradient):
            return call(stage, x)


@register_builder("pipeline")
def pipeline_from_config(name: str = "pipeline", stages: list | None = None, dataset: str | None = None,
                         frozen: Iterable[str] = (), gradients: dict | None = None,
                         ann: bool | str = False) -> Pipeline:
    """Rebuild a :class:`Pipeline` from its ``config`` (each stage from its own config; ``ann`` builds every stage's
    ANN twin and drops the stage gradients)."""
    if not stages:
        raise ValueError("a pipeline config needs 'stages': a list of [name, model config] pairs")
    built = []
    for stage_name, config in stages:
        if not isinstance(config, dict):
            raise ValueError(f"pipeline stage {stage_name!r} has no model config to rebuild it from")
        built.append((stage_name, build_model({**config, "ann": ann} if ann else config)))
    pipeline = Pipeline(built, frozen, None if ann else gradients)
    if dataset is not None and getattr(pipeline.info, "name", dataset) != dataset:
        raise ValueError(f"pipeline config says dataset {dataset!r}, its classifier is for {pipeline.info.name!r}")
    return pipeline
