"""``wrap``: a SpikingJelly, snnTorch or Norse network as a model with spikeshield's contract (DESIGN 4-7).

The wrapper copies the user's network, puts a :class:`~spikeshield.adapters.foreign.ForeignNeuron` in the place of
each of its neurons, and runs it on the encoded frames: pixel images ``[B, C, H, W]`` in [0, 1] in, per-step class
scores ``[T, B, classes]`` out (``forward_steps``), their mean from ``model(x)``. Neuron state lives inside one call,
so nothing leaks between calls and no ``reset_net`` is needed; the spike is ours, so every ``Attack(grad=...)`` mode
reaches the neurons and the surrogate works in eval mode (which changes only BN and dropout).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from spikeshield.adapters import norse_neurons, snntorch_neurons, spikingjelly_neurons
from spikeshield.adapters.foreign import ForeignNeuron, Integrator, TwinLayer
from spikeshield.data.info import DatasetInfo, dataset_info
from spikeshield.encoding import Direct, Encoder, make_encoder
from spikeshield.models.layers import QuantisedClamp
from spikeshield.validation import check_images, unknown_name

#: framework name -> its driver module (``convert``, ``is_neuron``); the package each needs is imported on use
FRAMEWORKS = {"spikingjelly": spikingjelly_neurons, "snntorch": snntorch_neurons, "norse": norse_neurons}


class WrappedModel(nn.Module):
    """A foreign network with spikeshield's model contract (build it with :func:`wrap`).

    ``net`` is the converted copy; ``fold`` says whether it is called once on the folded ``[T*B, ...]`` frames (a
    per-step network) or on ``[T, B, ...]`` (a sequence network); ``readout`` picks the class scores from what the
    network returns.
    """

    def __init__(self, net: nn.Module, info: DatasetInfo, encoder: Encoder, T: int, fold: bool,
                 readout: int | Callable[[Any], torch.Tensor], input_range: tuple[float, float],
                 normalize: tuple[Any, Any] | None, framework: str, stochastic: bool | None) -> None:
        super().__init__()
        self.net, self.info, self.encoder, self.T, self.fold = net, info, encoder, T, fold
        self.readout, self.input_range, self.framework, self._stochastic = readout, input_range, framework, stochastic
        shape = (1, 1, info.channels, 1, 1)
        mean, std = normalize if normalize is not None else (0.0, 1.0)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).expand(info.channels).reshape(shape),
                             persistent=False)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).expand(info.channels).reshape(shape),
                             persistent=False)
        self.config = {"name": "wrapped", "framework": framework, "module": type(net).__name__, "T": T,
                       "dataset": info.name, "encoder": type(encoder).__name__.lower()}

    @property
    def is_stochastic(self) -> bool:
        """As declared to :func:`wrap`; else True if the encoder or a module says it draws random numbers."""
        if self._stochastic is not None:
            return self._stochastic
        return any(getattr(m, "is_stochastic", False) for m in self.modules() if m is not self)

    @property
    def num_classes(self) -> int:
        """Number of output classes."""
        return self.info.num_classes

    def forward_steps(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step class scores ``[T, B, classes]`` for images ``x`` ``[B, C, H, W]`` in [0, 1]."""
        check_images(x, self.info.channels, self.info.size, self.info.name)
        frames = self.encoder(x, self.T)
        low, high = self.input_range
        if (low, high) != (0.0, 1.0):
            frames = frames * (high - low) + low
        frames = (frames - self.mean) / self.std
        out = self.net(frames.flatten(0, 1) if self.fold else frames)
        out = self.readout(out) if callable(self.readout) else _pick(out, self.readout)
        if self.fold:
            out = out.unflatten(0, (self.T, -1))
        if out.dim() != 3 or out.shape[:2] != (self.T, x.shape[0]):
            raise RuntimeError(f"the wrapped network's scores have shape {tuple(out.shape)}, expected [T={self.T}, "
                               f"B={x.shape[0]}, classes]; check T, the readout and the network's time layout")
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores ``[B, classes]``: the time average of :meth:`forward_steps`."""
        return self.forward_steps(x).mean(0)

    def ann_twin(self, activation: str = "relu") -> WrappedModel:
        """The ANN twin (``grad="ann"`` / ``"ann-clamp"``, :func:`spikeshield.models.ann_twin`): a copy with every
        neuron a ReLU (``"relu"``) or the quantised clamp (``"clamp"``), leaky-integrator readouts the identity,
        ``T = 1`` with direct coding; the weights are a snapshot of the current ones."""
        if activation not in ("relu", "clamp"):
            raise ValueError(f"ANN twin activation must be 'relu' or 'clamp'; got {activation!r}")
        twin = copy.deepcopy(self)
        for parent in list(twin.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, ForeignNeuron | Integrator):
                    act = nn.ReLU() if activation == "relu" else QuantisedClamp()
                    setattr(parent, name, TwinLayer(child, act))
        twin.T, twin.encoder, twin._stochastic = 1, Direct(), False
        return twin


def _pick(out: Any, index: int) -> torch.Tensor:
    """Element ``index`` of a tuple/list output (snnTorch ``(spk, mem)``, Norse ``(out, state)``), else ``out``."""
    return out[index] if isinstance(out, tuple | list) else out


def detect(module: nn.Module) -> str:
    """The framework whose neurons ``module`` holds (``"spikingjelly"``, ``"snntorch"`` or ``"norse"``)."""
    found = {name for m in module.modules() for name in FRAMEWORKS if type(m).__module__.split(".")[0] == name}
    if len(found) != 1:
        what = "no neurons of SpikingJelly, snnTorch or Norse" if not found else f"neurons of {sorted(found)}"
        raise ValueError(f"cannot detect the framework of {type(module).__name__}: it has {what}; pass framework=")
    return found.pop()


def convert(module: nn.Module, framework: str, T: int) -> tuple[nn.Module, bool]:
    """A copy of ``module`` with each neuron replaced by its :class:`ForeignNeuron`, and whether it runs folded.

    Raises ``ValueError`` naming any stateful module of the framework that has no adapter.
    """
    driver = FRAMEWORKS[framework]
    net = copy.deepcopy(module)
    adapters, fold = driver.convert(net)
    if isinstance(net, tuple(adapters)):
        raise ValueError(f"the network is a single {type(net).__name__}; wrap a network that contains it")
    unsupported = set()
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            adapter = next((a for cls, a in adapters.items() if isinstance(child, cls)), None)
            if adapter is not None:
                setattr(parent, name, adapter(child, T, fold))
            elif driver.is_neuron(child) and not any(isinstance(child, a) for a in adapters.values()):
                unsupported.add(type(child).__name__)
    if unsupported:
        supported = sorted(cls.__name__ for cls in adapters)
        raise ValueError(f"{framework} modules {sorted(unsupported)} have no spikeshield adapter (supported: "
                         f"{supported}); their state would leak or their gradient modes would not apply")
    return net, fold


def wrap(module: nn.Module, framework: str = "auto", T: int = 8, encoder: str | Encoder = "direct",
         input_range: tuple[float, float] = (0.0, 1.0), dataset: str = "fashion_mnist",
         normalize: tuple[Any, Any] | None = None, readout: int | Callable[[Any], torch.Tensor] = 0,
         stochastic: bool | None = None) -> WrappedModel:
    """A SpikingJelly / snnTorch / Norse network as a spikeshield model (pixels in, ``[B, classes]`` out).

    Args:
        module: the user's network, mapping one time step ``[B, ...]`` to scores (snnTorch ``init_hidden=True``
            neurons, SpikingJelly single-step mode, Norse cells in a ``SequentialState``), or a whole sequence
            ``[T, B, ...]`` to ``[T, B, ...]`` (SpikingJelly multi-step mode, Norse ``LIF`` / ``LI`` layers). It is
            copied; the original is left untouched.
        framework: ``"spikingjelly"``, ``"snntorch"``, ``"norse"`` or ``"auto"`` (from the neurons' packages).
        T: time steps.
        encoder: spikeshield encoder name (``"direct"``, ``"poisson"``, ``"rsc1"``, ...) or instance.
        input_range: the pixel range the network was trained on; ``[0, 1]`` maps linearly onto it.
        dataset: the dataset the network classifies (image shape, classes; e.g. ``"fashion_mnist"``).
        normalize: ``(mean, std)`` per channel applied after ``input_range`` (as a ``Normalize`` transform), or None.
        readout: which element of a tuple output holds the scores (snnTorch ``output=True`` gives ``(spk, mem)``:
            0 for spike counts, 1 for the membrane), or a callable on the output.
        stochastic: declare randomness (None: the encoder and modules say).

    Raises ``ValueError`` for an unknown framework, neurons without an adapter, or a network whose neurons step
    through time themselves (explicit state arguments: a ``RuntimeError`` on the first call).

    >>> model = wrap(snn_net, framework="snntorch", T=8)       # doctest: +SKIP
    >>> x_adv = PGD(model, eps=8/255, grad="rga")(x, y)          # doctest: +SKIP
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"wrap takes a torch.nn.Module; got {type(module).__name__}")
    if framework == "auto":
        framework = detect(module)
    if framework not in FRAMEWORKS:
        raise unknown_name("framework", framework, [*FRAMEWORKS, "auto"])
    if not (isinstance(T, int) and T >= 1):
        raise ValueError(f"T must be a positive integer; got {T!r}")
    low, high = (float(v) for v in input_range)
    if not high > low:
        raise ValueError(f"input_range must be (low, high) with high > low; got {input_range}")
    net, fold = convert(module, framework, T)
    encoder = make_encoder(encoder) if isinstance(encoder, str) else encoder
    model = WrappedModel(net, dataset_info(dataset), encoder, T, fold, readout, (low, high), normalize, framework,
                         stochastic)
    return model.train(module.training)
