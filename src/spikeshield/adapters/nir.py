"""NIR graphs in and out: :func:`from_nir` builds a spikeshield model from a Neuromorphic Intermediate Representation
graph (a chain of nodes), :func:`to_nir` writes a spikeshield model as one.

Time. NIR neurons are continuous-time ODEs; a model steps them with forward Euler at ``dt`` seconds (default
:data:`DEFAULT_DT` = 1e-4, what snnTorch's exporter and importer assume; Norse exports with 1e-3). In steps
(``n = tau / dt``), a LIF node runs

    v[t] = (1 - 1/n) v'[t-1] + (v_leak + r I[t]) / n,    s[t] = H(v[t] - v_threshold),    v'[t] = v_reset if s[t]

from ``v'[-1] = 0``: the pre-reset membrane decides the spike and the reset acts on the next step (snnTorch's Leaky
with ``reset_mechanism="zero"``). IF has no time constant; it runs ``v[t] = v'[t-1] + r I[t]`` (the gain per step,
as Norse and Sinabs read it). CubaLIF filters its input first, ``i[t] = (1 - 1/n_syn) i[t-1] + w_in S[t] / n_syn``,
and its membrane integrates the new ``i[t]`` (snnTorch's Synaptic order). LI and I are LIF and IF without spikes;
Threshold is a spike without memory.

Layers. Stateless nodes (Affine, Linear, Conv1d, Conv2d, Flatten, AvgPool2d, SumPool2d, Scale) run on ``T*B``
folded into the batch. A LIF / IF / Threshold node with one tau, r and threshold for all its neurons, no leak voltage
and reset to 0 becomes spikeshield's :class:`~spikeshield.neurons.lif.LIF` (decay form for ``r / n = 1``,
time-constant form for ``r = 1``; gains within a relative 1e-5 of these count as equal, since exporters round
through float32); any other spiking node becomes a :class:`NIRNeuron` with per-neuron parameters. An LI node with
one tau, ``r = 1`` and no leak voltage is spikeshield's PSC filter, made the synapse of the neuron before it. Every
neuron spikes through :func:`spikeshield.neurons.gradients.spike`, so every attacker's gradient mode reaches it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from spikeshield.data.info import dataset_info
from spikeshield.encoding import Direct, make_encoder
from spikeshield.models.layers import QuantisedClamp, SumPool2d, TimeFold
from spikeshield.models.registry import register_builder
from spikeshield.models.spiking_model import SpikingModel
from spikeshield.neurons.base import SpikingNeuron
from spikeshield.neurons.gradients import RateParameters, spike
from spikeshield.neurons.lif import LIF, LIFParameters
from spikeshield.neurons.surrogate import Surrogate, make_surrogate, surrogate_name
from spikeshield.neurons.synapse import PSC

#: the Euler step in seconds that NIR time constants are divided by (snnTorch's; pass dt=1e-3 for Norse graphs)
DEFAULT_DT = 1e-4
_RTOL = 1e-5  # gains this close to 1 (or to 1/n) are taken as exactly that: float32 exporters round them

_NODES = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Scale, nir.Conv1d, nir.Conv2d, nir.Flatten,
          nir.AvgPool2d, nir.SumPool2d, nir.LIF, nir.IF, nir.CubaLIF, nir.Threshold, nir.LI, nir.I)


class NIRNeuron(SpikingNeuron):
    """Spiking neurons with per-neuron parameters (a NIR LIF, IF, Threshold or CubaLIF node), on ``[T, B, ...]``.

    One step: ``v[t] = decay v'[t-1] + gain i[t] + bias``, spike where ``v[t] > theta``, ``v'[t] = v_reset`` where it
    spiked, from ``v'[-1] = 0``; the input current is ``i = I``, or with ``synaptic`` (CubaLIF) first filtered:
    ``i[t] = syn_decay i[t-1] + syn_gain I[t]``. The parameters are buffers of one sample's activation ``shape``.
    """

    def __init__(self, shape: tuple[int, ...], synaptic: bool = False, surrogate: Surrogate | str | dict = "sigmoid",
                 synapse: PSC | None = None) -> None:
        super().__init__(synapse)
        self.synaptic = synaptic
        self.surrogate = make_surrogate(surrogate)
        for name in ("decay", "gain", "bias", "theta", "v_reset", *(("syn_decay", "syn_gain") if synaptic else ())):
            self.register_buffer(name, torch.zeros(shape))

    def step(self, current, state, surrogate):
        """One step; the state is ``(v[t], s[t], i[t])``."""
        i = current
        if self.synaptic:
            i = self.syn_gain * current
            if state is not None:
                i = self.syn_decay * state[2] + i
        v = self.gain * i + self.bias
        if state is not None:
            v_prev, s_prev, _ = state
            v = self.decay * (v_prev * (1 - s_prev) + self.v_reset * s_prev) + v
        s = spike(v - self.theta, surrogate)
        return s, v, (v, s, i)

    def rate_parameters(self) -> RateParameters:
        """Leak, threshold and input scale for the rate modes (BPTR, RGA): the input scale of a synaptic neuron is its
        steady-state gain ``gain * syn_gain / (1 - syn_decay)``; leak voltage and reset value are left out."""
        scale = self.gain * self.syn_gain / (1 - self.syn_decay) if self.synaptic else self.gain
        return RateParameters(decay=self.decay, theta=self.theta, input_scale=scale)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.decay.shape)}, synaptic={self.synaptic}, surrogate={self.surrogate}"


class LeakyIntegrator(nn.Module):
    """Non-spiking leaky integrators (a NIR LI or I node): ``v[t] = decay v[t-1] + gain I[t] + bias`` from
    ``v[-1] = 0``, output ``v`` ``[T, B, ...]``. The parameters are buffers of one sample's activation ``shape``."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        for name in ("decay", "gain", "bias"):
            self.register_buffer(name, torch.zeros(shape))

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        """Membrane potentials ``[T, B, ...]`` for input currents ``[T, B, ...]``."""
        v, out = None, []
        for current_t in current:
            u = self.gain * current_t + self.bias
            v = u if v is None else self.decay * v + u
            out.append(v)
        return torch.stack(out)


class Scale(nn.Module):
    """Elementwise scaling by a buffer of one sample's activation ``shape`` (a NIR Scale node)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[N, ...]`` scaled elementwise."""
        return x * self.scale


_STATELESS = {"conv1d": nn.Conv1d, "conv2d": nn.Conv2d, "linear": nn.Linear, "flatten": nn.Flatten,
              "avg_pool2d": nn.AvgPool2d}


def _layer(spec: dict[str, Any]) -> nn.Module:
    """The module a layer spec (one entry of a NIR model's ``config["layers"]``) describes, with zero parameters."""
    kind = spec["type"]
    if kind in _STATELESS:
        return _STATELESS[kind](**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k != "type"})
    if kind == "scale":
        return Scale(tuple(spec["shape"]))
    if kind == "li":
        return LeakyIntegrator(tuple(spec["shape"]))
    if kind == "psc":
        return PSC(spec["tau_s"])
    synapse = PSC(spec["synapse"]) if spec["synapse"] is not None else None
    if kind == "lif":
        p = LIFParameters(spec["tau_m"], spec["theta"], spec["form"], make_surrogate(spec["surrogate"]))
        return LIF(p, synapse)
    return NIRNeuron(tuple(spec["shape"]), spec["synaptic"], spec["surrogate"], synapse)


def _model(config: dict[str, Any], layers: list[nn.Module]) -> SpikingModel:
    """A :class:`SpikingModel` of ``layers`` in order, runs of stateless ones folded over time (:class:`TimeFold`)."""
    body, pending = [], []
    for layer in layers:
        if isinstance(layer, SpikingNeuron | LeakyIntegrator | PSC):
            body += [TimeFold(*pending), layer] if pending else [layer]
            pending = []
        else:
            pending.append(layer)
    body += [TimeFold(*pending)] if pending else []
    encoder = make_encoder(config["encoder"], **config["encoder_params"])
    encoder.normalize = encoder.normalize and config["normalize"]
    return SpikingModel(nn.Sequential(*body), dataset_info(config["dataset"]), encoder, config["T"], config)


@register_builder("nir")
def build_nir_model(name: str = "nir", dataset: str = "fashion_mnist", T: int = 5, encoder: str = "direct",
                    encoder_params: dict[str, Any] | None = None, normalize: bool = False,
                    layers: list[dict[str, Any]] | None = None, path: str | None = None, dt: float = DEFAULT_DT,
                    surrogate: Surrogate | str | dict = "sigmoid", ann: bool | str = False,
                    **training_keys: Any) -> SpikingModel:
    """The model a :func:`from_nir` config describes, with zero weights (``checkpoint.load`` then fills them); or,
    with ``path``, the NIR file's model with its weights (``from_nir(path, ...)``: a training config's
    ``model: {name: nir, model_params: {path: FILE}}`` starts from an imported graph).

    ``ann``: the ANN twin (``True`` / ``"relu"`` or ``"clamp"``): each spiking neuron a ReLU or the quantised
    clamp, every leaky integrator and synapse the identity, ``T = 1`` with direct coding. A training config's
    neuron keys (``neuron``, ``synapse``, ``neuron_params``) must keep their defaults: the graph defines the neurons.
    """
    defaults = {"neuron": "lif", "synapse": "default", "neuron_params": {}}
    changed = sorted(k for k, v in training_keys.items() if k not in defaults or v != defaults[k])
    if changed:
        raise ValueError(f"a NIR model takes its neurons from the graph; remove {changed}")
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T (time steps) must be a positive integer; got {T!r}")
    if ann not in (False, True, "relu", "clamp"):
        raise ValueError(f"ann must be False, True / 'relu' or 'clamp'; got {ann!r}")
    if path is not None:
        if layers:
            raise ValueError("give a NIR model either path (a NIR file) or layers (a saved config), not both")
        model = from_nir(path, T, dataset, encoder, encoder_params, dt, surrogate, normalize)
        config = model.config
    else:
        config = dict(name=name, dataset=dataset_info(dataset).name, T=T, encoder=encoder,
                      encoder_params=dict(encoder_params or {}), normalize=normalize, layers=list(layers or []))
        model = _model(config, [_layer(spec) for spec in config["layers"]])
    return _ann_twin(model, "relu" if ann is True else ann) if ann else model


def _ann_twin(model: SpikingModel, activation: str) -> SpikingModel:
    """``model`` (a fresh build) turned into its ANN twin in place: same body indices, so the weights load by name."""
    for index, layer in enumerate(model.body):
        if isinstance(layer, SpikingNeuron):
            model.body[index] = nn.ReLU() if activation == "relu" else QuantisedClamp()
        elif isinstance(layer, LeakyIntegrator | PSC):
            model.body[index] = nn.Identity()
    model.T, model.encoder = 1, Direct()
    model.config = {**model.config, "T": 1, "encoder": "direct", "encoder_params": {}, "ann": activation}
    return model


def from_nir(graph: nir.NIRGraph | str | os.PathLike, T: int = 5, dataset: str = "fashion_mnist",
             encoder: str = "direct", encoder_params: dict[str, Any] | None = None, dt: float = DEFAULT_DT,
             surrogate: Surrogate | str | dict = "sigmoid", normalize: bool = False) -> SpikingModel:
    """A spikeshield model running the NIR ``graph`` (or the NIR file at that path) for ``T`` steps.

    The graph must be a chain from one Input node to one Output node (see the module docstring for the node types and
    their dynamics); its input is the encoder's frame each step (``encoder``, default ``"direct"``: the image every
    step), of the ``dataset``'s image shape ``(C, H, W)`` or flattened to ``(C*H*W,)``, and its output one score per
    class. The model's per-step scores (``forward_steps``) are the last node's per-step output: spikes if it is a
    spiking neuron, else the membrane (LI) or current (Affine); ``model(x)`` is their mean over time.

    ``dt``: the Euler step the graph's time constants are divided by; ``surrogate``: the backward of every spike (NIR
    holds none); ``normalize``: normalise the frames with the dataset statistics first (off: NIR models usually see
    raw pixels in [0, 1]). The model is a :class:`SpikingModel` whose config rebuilds it (``checkpoint.save`` /
    ``load``; ``load`` needs ``spikeshield.adapters`` imported). Raises ValueError naming the node for graphs or
    nodes it cannot run.

    >>> model = from_nir(export_to_nir(snntorch_net, x[:1], ignore_dims=[0]), T=25)   # doctest: +SKIP
    """
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T (time steps) must be a positive integer; got {T!r}")
    if isinstance(graph, str | os.PathLike):
        graph = nir.read(graph)
    info = dataset_info(dataset)
    chain = _chain(graph)
    image = (info.channels, info.size, info.size)
    shape = tuple(int(n) for n in chain[0][1].input_type["input"])
    specs: list[dict[str, Any]] = []
    if shape == (math.prod(image),):
        specs.append({"type": "flatten", "start_dim": 1, "end_dim": -1})
    elif shape != image:
        raise ValueError(f"the graph's input has shape {list(shape)}; {info.name} images are {list(image)} "
                         f"(or {math.prod(image)} flattened): pass the dataset the graph was made for")
    layers = [_layer(spec) for spec in specs]
    backward = make_surrogate(surrogate)
    backward = {"name": surrogate_name(backward), **dataclasses.asdict(backward)}  # JSON-ready, for the config
    for name, node in chain[1:-1]:
        spec, state = _convert(name, node, shape, dt, backward)
        if spec["type"] == "psc" and specs and specs[-1]["type"] in ("lif", "neuron") and specs[-1]["synapse"] is None:
            specs[-1]["synapse"] = spec["tau_s"]  # the neuron's PSC filter
            layers[-1].synapse = PSC(spec["tau_s"])
            continue
        layer = _layer(spec)
        try:
            layer.load_state_dict({k: torch.as_tensor(np.asarray(v), dtype=torch.get_default_dtype())
                                   for k, v in state.items()})
            if spec["type"] in _STATELESS:
                with torch.no_grad():
                    shape = tuple(layer(torch.zeros(1, *shape)).shape[1:])
        except RuntimeError as e:
            raise ValueError(f"node {name!r} ({type(node).__name__}) does not fit its input of shape {list(shape)}: "
                             f"{e}") from None
        specs.append(spec)
        layers.append(layer)
    if shape != (info.num_classes,):
        raise ValueError(f"the graph's output has shape {list(shape)}, not one score per class of {info.name} "
                         f"({info.num_classes})")
    config = dict(name="nir", dataset=info.name, T=T, encoder=encoder, encoder_params=dict(encoder_params or {}),
                  normalize=normalize, layers=specs)
    return _model(config, layers)


def _chain(graph: nir.NIRGraph) -> list[tuple[str, Any]]:
    """The graph's ``(name, node)`` pairs in order from its Input node to its Output node, or a ValueError naming the
    node that makes it something else."""
    for name, node in graph.nodes.items():
        if type(node) not in _NODES:
            what = " (a subgraph, e.g. a recurrent layer)" if isinstance(node, nir.NIRGraph) else ""
            raise ValueError(f"node {name!r} is a {type(node).__name__}{what}, which from_nir does not support; "
                             f"it supports {', '.join(t.__name__ for t in _NODES)}")
    after: dict[str, str] = {}
    before: dict[str, str] = {}
    for a, b in graph.edges:
        for table, key, other, verb in ((after, a, b, "feeds"), (before, b, a, "receives from")):
            if key in table:
                raise ValueError(f"node {key!r} ({type(graph.nodes[key]).__name__}) {verb} both {table[key]!r} and "
                                 f"{other!r}: from_nir takes a chain (no branches, merges or recurrent connections)")
            table[key] = other
    inputs = [name for name, node in graph.nodes.items() if isinstance(node, nir.Input)]
    outputs = [name for name, node in graph.nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"from_nir takes a graph with one Input and one Output node; got inputs {inputs} and "
                         f"outputs {outputs}")
    order = [inputs[0]]
    while order[-1] in after and after[order[-1]] != inputs[0]:
        order.append(after[order[-1]])
    if order[-1] != outputs[0]:
        raise ValueError(f"the path from the Input node {inputs[0]!r} ends at {order[-1]!r}, not at the Output node "
                         f"{outputs[0]!r}: from_nir takes one chain from Input to Output")
    if len(order) != len(graph.nodes):
        raise ValueError(f"nodes {sorted(set(graph.nodes) - set(order))} are not on the path from Input to Output: "
                         f"from_nir takes one chain")
    return [(name, graph.nodes[name]) for name in order]


def _ints(value: Any, n: int) -> list[int]:
    """``value`` (an int or a sequence) as a list of ``n`` ints."""
    return [int(v) for v in np.broadcast_to(np.asarray(value), (n,))]


def _batched_dim(dim: int) -> int:
    """A NIR dimension (no batch axis) as a torch dimension of batched tensors."""
    return int(dim) + 1 if dim >= 0 else int(dim)


def _convert(name: str, node: Any, shape: tuple[int, ...], dt: float,
             surrogate: dict) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(layer spec, its tensors)`` of one NIR node whose input has per-sample ``shape``."""
    if isinstance(node, nir.Affine | nir.Linear):
        if node.weight.ndim != 2:
            raise ValueError(f"node {name!r} ({type(node).__name__}) has a {node.weight.ndim}-d weight; only 2-d "
                             f"(outputs x inputs) weights are supported")
        bias = isinstance(node, nir.Affine) and node.bias is not None
        spec = {"type": "linear", "in_features": node.weight.shape[1], "out_features": node.weight.shape[0],
                "bias": bias}
        return spec, {"weight": node.weight, **({"bias": node.bias} if bias else {})}
    if isinstance(node, nir.Conv1d | nir.Conv2d):
        n = node.weight.ndim - 2
        bias = node.bias is not None
        spec = {"type": f"conv{n}d", "in_channels": node.weight.shape[1] * int(node.groups),
                "out_channels": node.weight.shape[0], "kernel_size": list(node.weight.shape[2:]),
                "stride": _ints(node.stride, n), "dilation": _ints(node.dilation, n), "groups": int(node.groups),
                "padding": node.padding if isinstance(node.padding, str) else _ints(node.padding, n), "bias": bias}
        return spec, {"weight": node.weight, **({"bias": node.bias} if bias else {})}
    if isinstance(node, nir.Flatten):
        return {"type": "flatten", "start_dim": _batched_dim(node.start_dim), "end_dim": _batched_dim(node.end_dim)}, {}
    if isinstance(node, nir.AvgPool2d | nir.SumPool2d):
        kernel = _ints(node.kernel_size, 2)
        return {"type": "avg_pool2d", "kernel_size": kernel, "stride": _ints(node.stride, 2),
                "padding": _ints(node.padding, 2),
                "divisor_override": math.prod(kernel) if isinstance(node, nir.SumPool2d) else None}, {}
    if isinstance(node, nir.Scale):
        return {"type": "scale", "shape": list(shape)}, {"scale": _full(node.scale, shape, name)}
    return _neuron(name, node, shape, dt, surrogate)


def _full(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    """A node parameter broadcast to one sample's activation ``shape`` (float64)."""
    try:
        return np.broadcast_to(np.asarray(value, dtype=np.float64), shape).copy()
    except ValueError:
        raise ValueError(f"node {name!r}: a parameter of shape {list(np.shape(value))} does not fit the node's "
                         f"input of shape {list(shape)}") from None


def _neuron(name: str, node: Any, shape: tuple[int, ...], dt: float,
            surrogate: dict) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(layer spec, its buffers)`` of a neuron node, in steps of ``dt`` (see the module docstring)."""
    full = lambda value: _full(value, shape, name)  # noqa: E731

    def steps(tau: Any) -> np.ndarray:
        n = full(tau) / dt
        if not np.all((n >= 1) & np.isfinite(n)):
            raise ValueError(f"node {name!r} ({type(node).__name__}) has a time constant not in [dt, inf) for "
                             f"dt = {dt}: forward Euler needs tau >= dt; pass the dt the graph was made for")
        return n

    def unit(gain: np.ndarray) -> np.ndarray:
        return np.ones_like(gain) if np.allclose(gain, 1, rtol=_RTOL, atol=0) else gain

    if isinstance(node, nir.Threshold):
        n, gain, bias = full(1.0), full(1.0), full(0.0)
    elif isinstance(node, nir.IF | nir.I):
        n, gain, bias = full(np.inf), unit(full(node.r)), full(0.0)
    else:
        n = steps(node.tau_mem if isinstance(node, nir.CubaLIF) else node.tau)
        gain, bias = unit(full(node.r) / n), full(node.v_leak) / n
    buffers = {"decay": 1 - 1 / n, "gain": gain, "bias": bias}
    plain = np.all(n == n.flat[0]) and not bias.any()  # one time constant, no leak voltage
    tau_form = plain and math.isfinite(n.flat[0]) and np.allclose(gain, 1 / n, rtol=_RTOL, atol=0)
    if isinstance(node, nir.LI | nir.I):
        if tau_form:
            return {"type": "psc", "tau_s": float(n.flat[0])}, {}
        return {"type": "li", "shape": list(shape)}, buffers
    buffers["theta"] = full(node.threshold if isinstance(node, nir.Threshold) else node.v_threshold)
    buffers["v_reset"] = full(0.0 if isinstance(node, nir.Threshold) else node.v_reset)
    synaptic = isinstance(node, nir.CubaLIF)
    if synaptic:
        n_syn = steps(node.tau_syn)
        buffers.update(syn_decay=1 - 1 / n_syn, syn_gain=unit(full(node.w_in) / n_syn))
    theta = buffers["theta"]
    if (not synaptic and plain and np.all(theta == theta.flat[0]) and not buffers["v_reset"].any()
            and (np.all(gain == 1) or tau_form)):
        form = "decay" if np.all(gain == 1) else "tau"
        return {"type": "lif", "tau_m": float(n.flat[0]), "theta": float(theta.flat[0]), "form": form,
                "surrogate": surrogate, "synapse": None}, {}
    return {"type": "neuron", "shape": list(shape), "synaptic": synaptic, "surrogate": surrogate,
            "synapse": None}, buffers


def to_nir(model: SpikingModel, dt: float = DEFAULT_DT) -> nir.NIRGraph:
    """The NIR graph of a spikeshield model, its time constants in seconds for Euler steps of ``dt``.

    The model must code images directly (the graph's input is the image, every step) and its body must be a chain of
    conv / linear layers (a batch norm is folded into the layer before it, with its running statistics: the model's
    eval-mode behaviour), average / sum pooling (sum pooling becomes AvgPool2d and a Scale), flatten, dropout
    (skipped), spikeshield's LIF neurons (IF for ``tau_m = inf``), PSC filters (LI nodes) and the layers
    :func:`from_nir` makes. The model's input normalisation becomes a per-channel 1x1 convolution after the Input
    node. Raises ValueError naming the first layer NIR cannot express (max pooling, stochastic or adaptive neurons,
    residual blocks, ...).

    >>> graph = to_nir(create_model("lenet", T=5)); nir.write("lenet.nir", graph)   # doctest: +SKIP
    """
    if not isinstance(model, SpikingModel):
        raise ValueError(f"to_nir exports a SpikingModel (create_model or from_nir); got a {type(model).__name__}")
    if type(model.encoder) is not Direct:
        raise ValueError(f"the model's encoder {type(model.encoder).__name__} is not direct coding: a NIR graph's "
                         f"input is the frame each step, so only models that see the image every step export")
    info = model.info
    x = torch.zeros(1, info.channels, info.size, info.size, device=model.mean.device)
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array(x.shape[1:]))}
    if model.encoder.normalize:
        std, mean = model.std.flatten().double().cpu().numpy(), model.mean.flatten().double().cpu().numpy()
        weight = (1 / std).reshape(-1, 1, 1, 1).astype(np.float32)
        nodes["normalize"] = nir.Conv2d(input_shape=(info.size, info.size), weight=weight, stride=1, padding=0,
                                        dilation=1, groups=info.channels, bias=(-mean / std).astype(np.float32))
    with torch.no_grad():
        for path, module in _leaves(model.body, "body"):
            x = _export(path, module, x, nodes, dt)
    nodes["output"] = nir.Output(output_type=np.array(x.shape[1:]))
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:], strict=True)))


def _leaves(module: nn.Module, path: str):
    """``(path, module)`` of the layers of nested ``nn.Sequential`` containers (TimeFold included), in order."""
    if type(module) in (nn.Sequential, TimeFold):
        for name, child in module.named_children():
            yield from _leaves(child, f"{path}.{name}")
    else:
        yield path, module


def _numpy(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy()


def _export(path: str, module: nn.Module, x: torch.Tensor, nodes: dict[str, Any], dt: float) -> torch.Tensor:
    """Add the NIR node(s) of layer ``module`` at ``path`` (input ``x`` ``[1, ...]``) to ``nodes``; its output."""
    shape = tuple(x.shape[1:])
    if isinstance(module, nn.Identity | nn.Dropout):
        return x
    if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
        _fold_batch_norm(path, module, nodes)
        return x
    if isinstance(module, nn.Linear):
        weight, bias = _numpy(module.weight), _numpy(module.bias)
        nodes[path] = nir.Linear(weight=weight) if bias is None else nir.Affine(weight=weight, bias=bias)
    elif isinstance(module, nn.Conv1d | nn.Conv2d) and module.padding_mode == "zeros":
        conv = nir.Conv1d if isinstance(module, nn.Conv1d) else nir.Conv2d
        bias = _numpy(module.bias) if module.bias is not None else np.zeros(module.out_channels, np.float32)
        size = shape[1] if conv is nir.Conv1d else shape[1:]
        nodes[path] = conv(input_shape=size, weight=_numpy(module.weight), stride=module.stride,
                           padding=module.padding, dilation=module.dilation, groups=module.groups, bias=bias)
    elif isinstance(module, nn.Flatten) and module.start_dim != 0:
        start = module.start_dim - 1 if module.start_dim > 0 else module.start_dim
        end = module.end_dim - 1 if module.end_dim > 0 else module.end_dim
        nodes[path] = nir.Flatten(input_type=np.array(shape), start_dim=start, end_dim=end)
    elif (isinstance(module, nn.AvgPool2d) and not module.ceil_mode
          and (module.count_include_pad or not any(_ints(module.padding, 2)))):
        kernel = _ints(module.kernel_size, 2)
        pool = nir.SumPool2d if module.divisor_override == math.prod(kernel) else nir.AvgPool2d
        if module.divisor_override not in (None, math.prod(kernel)):
            raise ValueError(f"layer {path} (AvgPool2d) divides by {module.divisor_override}, neither the window "
                             f"size nor none: NIR has no such pooling")
        nodes[path] = pool(kernel_size=np.array(kernel), stride=np.array(_ints(module.stride, 2)),
                           padding=np.array(_ints(module.padding, 2)))
    elif isinstance(module, SumPool2d):  # avg * (k^2 scale): exactly the same float operations as the layer
        nodes[path] = nir.AvgPool2d(kernel_size=np.array([module.kernel] * 2), stride=np.array([module.kernel] * 2),
                                    padding=np.array([0, 0]))
        out = module(x)
        nodes[f"{path}.scale"] = nir.Scale(scale=np.full(out.shape[1:], module.kernel**2 * module.scale, np.float32))
        return out
    elif isinstance(module, Scale):
        nodes[path] = nir.Scale(scale=_numpy(module.scale))
    elif isinstance(module, PSC):
        nodes[path] = _psc_node(module.tau_s, shape, dt)
        return x
    elif isinstance(module, LeakyIntegrator):
        nodes[path] = _integrator_node(path, module, dt)
        return x
    elif isinstance(module, SpikingNeuron):
        nodes[path] = _neuron_node(path, module, shape, dt)
        if module.synapse is not None:
            nodes[f"{path}.synapse"] = _psc_node(module.synapse.tau_s, shape, dt)
        return x
    else:
        raise ValueError(f"layer {path} ({module}) has no NIR equivalent: {_why(module)}")
    return module(x)


def _why(module: nn.Module) -> str:
    """Why a layer does not export."""
    if isinstance(module, nn.MaxPool1d | nn.MaxPool2d | nn.AdaptiveMaxPool2d):
        return "NIR has no max pooling (use average pooling)"
    if isinstance(module, nn.Conv1d | nn.Conv2d):
        return "NIR convolutions pad with zeros only"
    if isinstance(module, nn.AvgPool2d):
        return "NIR average pooling rounds the output size down and counts padded zeros"
    return ("NIR graphs are chains of affine / conv / pooling / flatten / scale layers and LIF, IF, CubaLIF and LI "
            "neurons; to_nir exports those of them spikeshield models use")


def _fold_batch_norm(path: str, bn: nn.Module, nodes: dict[str, Any]) -> None:
    """Fold batch norm ``bn`` (running statistics) into the conv / affine node just before it."""
    last = list(nodes)[-1]
    node = nodes[last]
    if not isinstance(node, nir.Conv1d | nir.Conv2d | nir.Affine | nir.Linear) or bn.running_mean is None:
        raise ValueError(f"layer {path} ({type(bn).__name__}) cannot be folded: it must follow a conv or linear layer "
                         f"directly and track running statistics (it follows {last!r}, a {type(node).__name__})")
    scale = (bn.weight.double() if bn.affine else 1) / torch.sqrt(bn.running_var.double() + bn.eps)
    shift = (bn.bias.double() if bn.affine else 0) - bn.running_mean.double() * scale
    scale, shift = _numpy(scale), _numpy(shift)
    dtype = node.weight.dtype
    weight = (node.weight * scale.reshape(-1, *[1] * (node.weight.ndim - 1))).astype(dtype)
    bias = (getattr(node, "bias", 0) * scale + shift).astype(dtype)
    if isinstance(node, nir.Affine | nir.Linear):
        nodes[last] = nir.Affine(weight=weight, bias=bias)
    else:
        nodes[last] = dataclasses.replace(node, weight=weight, bias=bias)


def _psc_node(tau_s: float, shape: tuple[int, ...], dt: float) -> nir.LI:
    """The LI node of a PSC filter ``a[t] = (1 - 1/tau_s) a[t-1] + s[t] / tau_s``."""
    return nir.LI(tau=np.full(shape, tau_s * dt), r=np.ones(shape), v_leak=np.zeros(shape))


def _neuron_node(path: str, neuron: SpikingNeuron, shape: tuple[int, ...], dt: float) -> Any:
    """The NIR node of a spikeshield LIF or an imported :class:`NIRNeuron`."""
    if type(neuron) is LIF:
        p = neuron.p
        full = lambda value: np.full(shape, value, dtype=np.float64)  # noqa: E731
        if math.isinf(p.tau_m):
            return nir.IF(r=full(1.0), v_threshold=full(p.theta), v_reset=full(0.0))
        return nir.LIF(tau=full(p.tau_m * dt), r=full(p.tau_m if p.form == "decay" else 1.0), v_leak=full(0.0),
                       v_threshold=full(p.theta), v_reset=full(0.0))
    if type(neuron) is NIRNeuron:
        b = {name: _numpy(t.double()) for name, t in neuron.named_buffers()}
        common = {"v_threshold": b["theta"], "v_reset": b["v_reset"]}
        if not neuron.synaptic and np.all(b["decay"] == 1) and not b["bias"].any():
            return nir.IF(r=b["gain"], **common)
        leak = 1 - b["decay"]
        if not np.all(leak > 0):
            raise ValueError(f"layer {path} (NIRNeuron) mixes leaky and non-leaky neurons: no NIR node holds both")
        membrane = {"r": b["gain"] / leak, "v_leak": b["bias"] / leak, **common}
        if neuron.synaptic:
            syn_leak = 1 - b["syn_decay"]
            return nir.CubaLIF(tau_mem=dt / leak, tau_syn=dt / syn_leak, w_in=b["syn_gain"] / syn_leak, **membrane)
        return nir.LIF(tau=dt / leak, **membrane)
    what = "it draws random numbers" if neuron.is_stochastic else f"{type(neuron).__name__} dynamics"
    raise ValueError(f"layer {path} ({type(neuron).__name__}) has no NIR equivalent: {what}; NIR neurons are "
                     f"deterministic LIF / IF / CubaLIF (spikeshield's LIF exports)")


def _integrator_node(path: str, module: LeakyIntegrator, dt: float) -> Any:
    """The NIR LI (or I) node of an imported :class:`LeakyIntegrator`."""
    b = {name: _numpy(t.double()) for name, t in module.named_buffers()}
    if np.all(b["decay"] == 1) and not b["bias"].any():
        return nir.I(r=b["gain"])
    leak = 1 - b["decay"]
    if not np.all(leak > 0):
        raise ValueError(f"layer {path} (LeakyIntegrator) mixes leaky and non-leaky units: no NIR node holds both")
    return nir.LI(tau=dt / leak, r=b["gain"] / leak, v_leak=b["bias"] / leak)
