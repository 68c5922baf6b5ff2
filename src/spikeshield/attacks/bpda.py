"""BPDA: Backward Pass Differentiable Approximation for non-differentiable or purifying input stages.

Paper: Athalye, Carlini, Wagner, "Obfuscated Gradients Give a False Sense of Security", ICML 2018 (section 4.1).

A defence ``classifier(f(x))`` whose stage ``f`` is non-differentiable (quantisation, JPEG, thresholding) or has
useless gradients (a purifier) hides the gradient from white-box attacks. BPDA keeps the forward pass ``f(x)``
exactly and replaces the backward pass by the gradient of a differentiable approximation ``g(x)`` of ``f``; the
default ``g(x) = x`` (the identity, "straight-through") suits any stage with ``f(x) ~ x``.

>>> model = with_bpda(quantise, classifier)        # attacks now see straight-through gradients   # doctest: +SKIP
>>> x_adv = PGD(model, eps=8/255)(x, y)                                                          # doctest: +SKIP

The same trick gives the ANN-twin gradient of a whole SNN (METHODS 7): ``BPDA(stage=snn, approximation=twin)``,
wrapped by :func:`with_ann_gradients` (what ``Attack(..., grad="ann")`` uses).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class BPDA(nn.Module):
    """Wrap a stage ``f``: the forward pass returns ``f(x)`` exactly, the backward pass is that of ``approximation``.

    Args:
        stage: the stage ``f`` (a module or a callable ``x -> tensor``), e.g. a quantiser or a purifier network.
            It runs without gradients (its parameters get none through the wrapper).
        approximation: a differentiable callable ``g`` with ``g(x)`` of the shape of ``f(x)`` and ``g ~ f``; None
            (default) is the identity, which needs ``f(x)`` of the shape of ``x``.

    The output is ``f(x) + (g(x) - g(x).detach())``: the added term is exactly zero, so the value is ``f(x)`` to
    the bit, and its gradient is that of ``g``. Usable anywhere in a model, e.g.
    ``nn.Sequential(BPDA(quantise), classifier)``; :func:`with_bpda` also keeps the classifier's ``info``.

    Shapes: ``x`` any ``[B, ...]`` -> ``f(x)``.
    """

    def __init__(self, stage: Callable[[torch.Tensor], torch.Tensor],
                 approximation: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        if not callable(stage):
            raise TypeError(f"BPDA wraps a callable stage f(x) (a module or function); got {type(stage).__name__}")
        if approximation is not None and not callable(approximation):
            raise TypeError(f"approximation must be a callable g(x) or None (identity); got "
                            f"{type(approximation).__name__}")
        self.stage, self.approximation = stage, approximation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``f(x)`` in value; the gradient of ``g(x)`` (the identity by default) in the backward pass."""
        with torch.no_grad():
            fx = self.stage(x)
        g = x if self.approximation is None else self.approximation(x)
        if not isinstance(fx, torch.Tensor) or fx.shape != g.shape:
            what = "x (identity approximation)" if self.approximation is None else "approximation(x)"
            got = list(fx.shape) if isinstance(fx, torch.Tensor) else type(fx).__name__
            raise ValueError(f"BPDA: the stage's output {got} must have the shape of {what} {list(g.shape)}; "
                             f"pass an approximation g with g(x) shaped like f(x)")
        return fx.detach() + (g - g.detach())

    def extra_repr(self) -> str:
        """Which backward pass is used."""
        g = self.approximation
        return "approximation=" + ("identity" if g is None else getattr(g, "__name__", type(g).__name__))


class BPDAModel(nn.Module):
    """``classifier(BPDA(preprocess)(x))`` that looks like the classifier to attacks and ``evaluate``.

    Exposes the classifier's ``info``, ``num_classes`` and ``config`` (None where the classifier has none) and is
    stochastic if either stage is. Its ``training`` flag starts as the classifier's (the wrapper changes no mode).
    Built by :func:`with_bpda`.
    """

    def __init__(self, preprocess: BPDA, classifier: nn.Module) -> None:
        super().__init__()
        self.preprocess, self.classifier = preprocess, classifier
        self.training = bool(getattr(classifier, "training", False))  # report the classifier's mode; change none

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, classes]`` of the classifier on the preprocessed images ``x`` ``[B, C, H, W]``."""
        return self.classifier(self.preprocess(x))

    @property
    def info(self) -> Any:
        """The classifier's :class:`~spikeshield.data.info.DatasetInfo` (None if it has none)."""
        return getattr(self.classifier, "info", None)

    @property
    def num_classes(self) -> int | None:
        """Number of classes of the classifier (None if unknown)."""
        info = self.info
        return getattr(self.classifier, "num_classes", None) or getattr(info, "num_classes", None)

    @property
    def config(self) -> dict | None:
        """The classifier's config, marked as wrapped in BPDA (None if the classifier has none)."""
        config = getattr(self.classifier, "config", None)
        return None if config is None else {**config, "bpda": repr(self.preprocess)}

    @property
    def is_stochastic(self) -> bool:
        """True if the preprocessing stage or the classifier is random."""
        return any(bool(getattr(m, "is_stochastic", False)) for m in (self.preprocess.stage, self.classifier))


class ANNGradientModel(BPDAModel):
    """A spikeshield SNN whose values are its own and whose gradient is its ANN twin's (METHODS 7, SNN-RAT).

    The forward pass is ``BPDA(stage=snn, approximation=twin)(x)``: the SNN's logits to the bit (computed without
    a graph), the backward pass that of the twin (same weights, ReLU for every neuron, T = 1). Exposes the SNN's
    ``info``, ``num_classes``, ``is_stochastic`` and ``training`` like :class:`BPDAModel`; ``config`` is the SNN's
    marked with ``"gradient": "ann"``. Built by :func:`with_ann_gradients`.
    """

    def __init__(self, model: nn.Module, twin: nn.Module | None = None, activation: str = "relu") -> None:
        if twin is None:
            from spikeshield.models.ann import ann_twin

            twin = ann_twin(model, activation)
        super().__init__(BPDA(model, twin), model)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The SNN's logits ``[B, classes]`` for ``x`` ``[B, C, H, W]``, with the twin's gradient."""
        return self.preprocess(x)

    @property
    def twin(self) -> nn.Module:
        """The ANN twin whose backward pass is used."""
        return self.preprocess.approximation

    @property
    def config(self) -> dict | None:
        """The SNN's config, marked with ``"gradient": "ann"`` (None if the SNN has none)."""
        config = getattr(self.classifier, "config", None)
        gradient = "ann" if self.activation == "relu" else f"ann-{self.activation}"
        return None if config is None else {**config, "gradient": gradient}


def with_ann_gradients(model: nn.Module, activation: str = "relu", twin: nn.Module | None = None) -> ANNGradientModel:
    """``model`` with the gradients of its ANN twin and every value its own (``Attack(..., grad="ann")``).

    Args:
        model: a spikeshield SNN built by :func:`~spikeshield.models.create_model`.
        activation: the twin's activation: ``"relu"`` (SNN-RAT; ``grad="ann"``) or ``"clamp"`` (``clamp(x, 0, 1)``
            quantised to 8 levels with a straight-through floor, as the RGA/HART code; ``grad="ann-clamp"``).
        twin: the differentiable stand-in; None builds :func:`~spikeshield.models.ann_twin` (a copy of the
            weights taken now: rebuild the wrapper after changing the SNN's weights).

    >>> x_adv = PGD(with_ann_gradients(snn), eps=8/255)(x, y)   # as PGD(snn, 8/255, grad="ann")  # doctest: +SKIP
    """
    return ANNGradientModel(model, twin, activation)


def with_bpda(preprocess: Callable[[torch.Tensor], torch.Tensor], classifier: nn.Module,
              approximation: Callable[[torch.Tensor], torch.Tensor] | None = None) -> BPDAModel:
    """The model ``classifier(preprocess(x))`` with BPDA gradients through ``preprocess``.

    Args:
        preprocess: the non-differentiable or purifying stage ``f`` (module or callable).
        classifier: the classifier (a spikeshield model: its ``info``, ``num_classes``, ``config`` and
            ``is_stochastic`` are exposed, so attacks and :func:`~spikeshield.evaluation.evaluate` work on it).
        approximation: differentiable ``g ~ f`` for the backward pass; None is the identity.

    >>> model = with_bpda(lambda x: torch.round(x * 7) / 7, classifier)   # doctest: +SKIP
    """
    return BPDAModel(BPDA(preprocess, approximation), classifier)
