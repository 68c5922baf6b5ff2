"""The attacker's choice of backward pass (DESIGN 6, METHODS 7).

Every neuron's spike goes through :func:`spike` or a neuron's own fused kernel, and both ask
:func:`active_surrogate` which ``dH/dv`` to use. A :func:`gradient_mode` context swaps it from outside, without
touching the forward pass or the weights, and restores the model's own surrogate when the context ends, even on an
exception.

The same context can instead hold a :class:`BackwardMode`; then
:meth:`SpikingNeuron.forward <spikeshield.neurons.base.SpikingNeuron.forward>` hands the layer to the mode's
:meth:`~BackwardMode.apply`, which computes the layer's exact output without a graph and attaches the mode's gradient
value-preservingly (``out + (h - h.detach())``), so every prediction stays bit-identical:

- rate modes (:class:`BPTR`, :class:`RGA`): ``dL/dI[t] = dL/ds[t] * factor`` from the input currents to the spikes,
  through the layer's PSC filter if it has one (needs the neuron's ``rate_parameters()``);
- unrolled modes (:class:`HART`, :class:`HARTMix`, :class:`PDSG`, :class:`ASSG`): the gradient of the neuron's own
  step function looped under autograd with the mode's per-step surrogates (any neuron with a ``step``).

A mode that runs a layer more than once replays a stochastic neuron's random draw (:class:`DrawReplay`): value and
gradient come from the same draw, and the global RNG advances as in one plain forward (DESIGN 7).

One context variable holds the override, so exactly one backward is active at a time. The ANN-twin gradient is a
whole-model substitution, not a neuron mode: see :func:`spikeshield.attacks.with_ann_gradients`
(``Attack(..., grad="ann")`` or ``"ann-clamp"``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from spikeshield.neurons.surrogate import SURROGATES, Surrogate, Triangle, make_surrogate
from spikeshield.validation import unknown_name


@dataclass(frozen=True)
class RateParameters:
    """What the rate-based modes need to know of a neuron: ``u[t] = decay u[t-1] (1 - s[t-1]) + input_scale I[t]``,
    ``s[t] = H(u[t] - theta)``.

    ``decay`` (lambda, 1 for integrate-and-fire) and ``theta`` may be floats or tensors broadcastable to one
    sample's activations (per-unit parameters). A tuple ``theta`` is a multi-level neuron's thresholds (MLF): its
    membrane has a trailing axis of sub-neurons, one per threshold, and the rate modes sum over them.
    """

    decay: float | torch.Tensor
    theta: float | torch.Tensor
    input_scale: float | torch.Tensor = 1.0


@dataclass(frozen=True)
class BackwardMode:
    """A backward pass that is not a plain surrogate swap (METHODS 7); the forward stays the neuron's exact one.

    Subclasses set ``name`` and define :meth:`apply`, which a :class:`~spikeshield.neurons.base.SpikingNeuron`
    calls in place of its own forward while the mode is active. Every apply returns the neuron's exact output
    (bit-identical) carrying the mode's gradient.
    """

    name: ClassVar[str] = "mode"

    def apply(self, neuron, current: torch.Tensor) -> torch.Tensor:
        """The layer's exact output for ``current`` ``[T, B, ...]`` with this mode's gradient attached."""
        raise NotImplementedError

    def fresh(self) -> BackwardMode:
        """The mode for one new attack call (stateful modes start new statistics; others return themselves)."""
        return self

    def __post_init__(self) -> None:
        for key, value in vars(self).items():
            if isinstance(value, int | float) and not isinstance(value, bool) and not value > 0:
                raise ValueError(f"backward mode {self.name!r}: {key} must be > 0, got {value}")


class DrawReplay:
    """Makes a backward mode's re-runs of a stochastic neuron see the draw of the exact forward they differentiate.

    Create it right before the exact forward (it takes the global torch RNG state: the CPU one, and the CUDA one of
    ``current``'s device when ``current`` is on CUDA); wrap every re-run of the neuron in ``with replay:``. On entry
    the RNG is set back to the state before the exact forward, so the re-run draws the same numbers; on exit (also
    on an exception) it is left as it was right after the exact forward, so the RNG advances exactly as in a plain
    forward and later layers and calls see no difference. The state after the exact forward is taken at the first
    entry, so nothing may draw between the exact forward and the first re-run.

    A neuron whose ``is_stochastic`` is false makes this a no-op (no RNG state is read or written).

    >>> replay = DrawReplay(neuron, current)   # doctest: +SKIP
    >>> out, membrane = neuron.exact(current)   # draws, e.g. random time constants   # doctest: +SKIP
    >>> with replay:
    ...     spikes = neuron.unroll(current, surrogate_at)   # the same draw   # doctest: +SKIP
    """

    __slots__ = ("device", "start", "end")

    def __init__(self, neuron, current: torch.Tensor) -> None:
        self.device = current.device if current.is_cuda else None
        self.start = self._state() if getattr(neuron, "is_stochastic", False) else None
        self.end = None

    def _state(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        cuda = torch.cuda.get_rng_state(self.device) if self.device is not None else None
        return torch.get_rng_state(), cuda

    def _restore(self, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
        cpu, cuda = state
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, self.device)

    def __enter__(self) -> DrawReplay:
        if self.start is not None:
            if self.end is None:
                self.end = self._state()
            self._restore(self.start)
        return self

    def __exit__(self, *exc) -> None:
        if self.end is not None:
            self._restore(self.end)


def _with_gradient(out: torch.Tensor, *carriers: tuple[float, torch.Tensor]) -> torch.Tensor:
    """``out`` to the bit, with the gradient of ``sum(weight * carrier)``: ``out + sum w (c - c.detach())``."""
    for weight, carrier in carriers:
        delta = carrier - carrier.detach()
        out = out + (delta if weight == 1 else weight * delta)
    return out


@dataclass(frozen=True)
class RateMode(BackwardMode):
    """A rate-based rule ``dL/dI[t] = dL/ds[t] * factor`` from a layer's input currents to its spikes.

    The exact output is computed without a graph and the rule attached value-preservingly, through the layer's PSC
    filter if it has one. Subclasses define :meth:`factor`, which may re-run the neuron (under :class:`DrawReplay`).
    """

    def factor(self, neuron, current: torch.Tensor) -> torch.Tensor:
        """The diagonal factor ``dL/dI[t] / dL/ds[t]`` of ``neuron`` at the (detached) input currents ``[T, B, ...]``,
        broadcastable to them."""
        raise NotImplementedError

    def apply(self, neuron, current):  # noqa: D102
        replay = DrawReplay(neuron, current)
        out, _ = neuron.exact(current)
        if not (torch.is_grad_enabled() and current.requires_grad):
            return out
        with torch.no_grad(), replay:
            factor = self.factor(neuron, current)
        return _with_gradient(out, (1, neuron.filter_spikes(current * factor)))


@dataclass(frozen=True)
class BPTR(RateMode):
    """Backpropagation through rate (SNN-RAT's ``RateBp``): ``dL/dI[t] = dL/ds[t] * 1[mean_t s > 0]``.

    The spikes come from the neuron's step function (:meth:`~spikeshield.neurons.base.SpikingNeuron.unroll`), so any
    neuron gets BPTR."""

    name: ClassVar[str] = "bptr"

    def factor(self, neuron, current):  # noqa: D102
        spikes = neuron.unroll(current, lambda t: neuron.surrogate)
        return (spikes != 0).any(0, keepdim=True).to(current.dtype)


@dataclass(frozen=True)
class RGA(RateMode):
    """Rate gradient approximation (Bu et al., CVPR 2023): ``dL/dI[t] = dL/ds[t] * g(Ibar)``.

    ``Ibar = mean_t(c I[t]) / theta`` (``c`` the input scale) and, with ``lambda`` the leak:
    ``g = (1 - gamma + gamma lambda) / (lambda + 1)`` where ``1 - lambda <= Ibar <= 2``; ``g = gamma`` where
    ``0 <= Ibar < 1 - lambda``; 0 elsewhere. The first range wins at ``Ibar = 1 - lambda`` (the reference code
    adds both there); for integrate-and-fire (``lambda = 1``) the second range is empty and ``g = 1/2`` on
    ``[0, 2]``. The factor does not include the chain factor ``c / theta`` (as the reference, where both are 1).
    RGA is defined through the neuron's leak and threshold, so the neuron must give them
    (:meth:`~spikeshield.neurons.base.SpikingNeuron.rate_parameters`).
    """

    name: ClassVar[str] = "rga"
    gamma: float = 0.2

    @staticmethod
    def parameters(neuron, mode: str) -> RateParameters:
        """``neuron.rate_parameters()``, or an error naming the neuron and ``mode`` if it has none."""
        try:
            return neuron.rate_parameters()
        except NotImplementedError:
            raise NotImplementedError(
                f"neuron {type(neuron).__name__} does not support the backward mode {mode!r}: it defines no "
                f"rate_parameters() (leak, threshold, input scale); use another gradient mode") from None

    def factor(self, neuron, current):  # noqa: D102
        p = self.parameters(neuron, self.name)
        drive = (current * p.input_scale).mean(0, keepdim=True)
        lam = torch.as_tensor(p.decay, dtype=current.dtype, device=current.device)
        gamma = self.gamma
        high = (1 - gamma + gamma * lam) / (lam + 1)
        zero = drive.new_zeros(())
        factor = zero
        for theta in p.theta if isinstance(p.theta, tuple) else (p.theta,):  # multi-level: sum over sub-neurons
            ibar = drive / theta
            in_high = (ibar >= 1 - lam) & (ibar <= 2)
            in_low = (ibar >= 0) & (ibar < 1 - lam)
            factor = factor + torch.where(in_high, high, torch.where(in_low, ibar.new_tensor(gamma), zero))
        return factor


@dataclass(frozen=True)
class HoSNNCode(RateMode):
    """The gradient of HoSNN's released code (METHODS 1): ``dL/dI[t] = dL/ds[t] * surrogate'(u[t] - theta0)`` with
    the neuron's own surrogate at the *base* threshold, back-propagated through time only through the PSC filter (not
    through the membrane's leak and reset, nor the threshold dynamics). Offered to reproduce the paper's attacks; it
    understates attack strength, so report the worse of it and full BPTT."""

    name: ClassVar[str] = "hosnn-code"

    def factor(self, neuron, current):  # noqa: D102
        _, membrane = neuron.run(current, neuron.surrogate)
        theta = RGA.parameters(neuron, self.name).theta
        if isinstance(theta, tuple):  # multi-level: membrane [T, B, ..., K], summed over the sub-neurons
            return neuron.surrogate.derivative(membrane - membrane.new_tensor(theta)).sum(-1)
        return neuron.surrogate.derivative(membrane - theta)


@dataclass(frozen=True)
class UnrolledMode(BackwardMode):
    """A mode whose gradient comes from the neuron's own :meth:`step` unrolled over time under autograd.

    The exact output comes from the neuron's default (fused) forward without a graph; the gradient from the
    step loop with the mode's per-step surrogates (:meth:`surrogates`), optionally with the state detached between
    steps (``detach_state``) and the input gradient averaged over time (``time_mean``). Any neuron with a
    :meth:`step` gets these modes; nothing else is needed.
    """

    detach_state: ClassVar[bool] = False
    time_mean: ClassVar[bool] = False

    def surrogates(self, neuron, membrane: torch.Tensor) -> Callable[[int], Surrogate]:
        """``t -> surrogate`` of step ``t``, given the exact pre-reset membrane ``[T, B, ...]``."""
        raise NotImplementedError

    def apply(self, neuron, current):  # noqa: D102
        replay = DrawReplay(neuron, current)
        out, membrane = neuron.exact(current)
        if not (torch.is_grad_enabled() and current.requires_grad):
            return out
        return _with_gradient(out, *self.carriers(neuron, current, membrane, replay))

    def carriers(self, neuron, current: torch.Tensor, membrane: torch.Tensor,
                 replay: DrawReplay) -> list[tuple[float, torch.Tensor]]:
        """``(weight, tensor)`` pairs whose weighted gradient the layer passes back (here: the unrolled one); every
        re-run of ``neuron`` goes inside ``with replay:``."""
        if self.time_mean:  # value unchanged; dL/dI[t] becomes the mean over t of the incoming gradient
            mean = current.mean(0, keepdim=True).expand_as(current)
            current = current.detach() + (mean - mean.detach())
        surrogate_at = self.surrogates(neuron, membrane)
        with replay:
            spikes = neuron.unroll(current, surrogate_at, detach_state=self.detach_state)
        return [(1, neuron.filter_spikes(spikes))]


@dataclass(frozen=True)
class HART(UnrolledMode):
    """HART (Hao et al., ICLR 2024; mode "avg"): the per-step input gradient replaced by its mean over T, the
    membrane detached across time, triangle surrogate of width ``g``.

    :class:`HARTMix` is their "MIX".
    """

    name: ClassVar[str] = "hart"
    detach_state: ClassVar[bool] = True
    time_mean: ClassVar[bool] = True
    mix: ClassVar[bool] = False
    g: float = 1.0

    def surrogates(self, neuron, membrane):  # noqa: D102
        triangle = Triangle(self.g)
        return lambda t: triangle

    def carriers(self, neuron, current, membrane, replay):  # noqa: D102
        (_, hart), = super().carriers(neuron, current, membrane, replay)
        if not self.mix:
            return [(1, hart)]
        with replay:
            bptt, _ = neuron.run(current, Triangle(self.g))
        return [(0.5, hart), (0.5, bptt)]


@dataclass(frozen=True)
class HARTMix(HART):
    """HART's "MIX": each layer passes back the mean of the HART gradient and the plain BPTT gradient (through the
    same triangle surrogate of width ``g``)."""

    name: ClassVar[str] = "hart-mix"
    mix: ClassVar[bool] = True


@dataclass(frozen=True)
class PDSG(UnrolledMode):
    """PDSG (Lun et al., CVPR 2025): Gaussian surrogate ``exp(-(v - s/2)^2 / (2 s^2)) / (sqrt(2 pi) s)``, ``s`` the
    standard deviation of the layer's membrane per sample: over time and positions per (sample, channel) for
    ``[T, B, C, H, W]``, over time and all ``N`` units per sample for ``[T, B, N]`` (0 replaced by 1); for a
    multi-level neuron (MLF) over its sub-neurons as well.

    Per sample, not over the batch, so a sample's gradient (and the verdict of an attack built on it) does not depend
    on which other samples share its batch; EOT copies of a sample in one batch would otherwise share statistics.
    """

    name: ClassVar[str] = "pdsg"

    def surrogates(self, neuron, membrane):  # noqa: D102
        activation_dims = membrane.dim() - getattr(neuron, "level_dims", 0)  # MLF: a trailing sub-neuron axis
        kept = 2 if activation_dims > 3 else 1  # (B, C) of [T, B, C, ...]; B of [T, B, N]
        s = membrane.std(dim=[0, *range(1 + kept, membrane.dim())], correction=0, keepdim=True)[0]
        s = torch.where(s > 0, s, torch.ones_like(s))  # [B, C, 1, ...] or [B, 1], broadcast to one step's v
        gaussian = ShiftedGaussian(s)
        return lambda t: gaussian


@dataclass(frozen=True)
class ASSG(UnrolledMode):
    """ASSG (Wang et al., arXiv 2512.22522): arctan surrogate with a per-neuron, per-step sharpness
    ``alpha = a / (M_t + relax D_t + 1e-4)``, ``a = 2 tan(pi A / 2) / pi``.

    ``M_t`` is an EMA (``beta``) of ``|v|`` (``v = u - theta``, the surrogate's argument, as the reference code),
    ``D_t`` an EMA of ``||v| - M_t|``, per sample, neuron and step, starting at 1 and 0 and updated once per
    gradient over the attack's iterations (frozen for EOT draws after the first: :func:`frozen_statistics`).
    Statistics restart when the attacked batch changes (a new call, or a restart on a subset).
    """

    name: ClassVar[str] = "assg"
    A: float = 0.45
    beta: float = 0.9
    relax: float = 1.5
    stats: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.A < 1 and self.beta < 1):
            raise ValueError(f"backward mode 'assg': A and beta must lie in (0, 1); got A={self.A}, beta={self.beta}")

    def fresh(self) -> ASSG:  # noqa: D102
        return dataclasses.replace(self)

    def surrogates(self, neuron, membrane):  # noqa: D102
        a = 2 * math.tan(math.pi * self.A / 2) / math.pi
        frozen = _FROZEN.get()
        return lambda t: AdaptiveArcTan(self, (id(neuron), t), a, frozen)


#: backward modes by name (``gradient_mode("rga")``, ``grad="hart"``)
BACKWARD_MODES: dict[str, type[BackwardMode]] = {
    "bptr": BPTR, "rga": RGA, "hart": HART, "hart-mix": HARTMix, "pdsg": PDSG, "assg": ASSG, "hosnn-code": HoSNNCode}

#: gradient names that are not neuron-level (handled by the attacks: the ANN twin with ReLU, or with the quantised
#: clamp of the RGA/HART code)
MODEL_GRADIENTS: tuple[str, ...] = ("ann", "ann-clamp")


def mode_parameters(mode: BackwardMode) -> dict:
    """A mode's parameters (its init fields, not its statistics) as a plain dict."""
    return {f.name: getattr(mode, f.name) for f in dataclasses.fields(mode) if f.init}


@dataclass(frozen=True)
class ShiftedGaussian(Surrogate):
    """PDSG's surrogate ``exp(-(v - s/2)^2 / (2 s^2)) / (sqrt(2 pi) s)``; ``s`` a tensor broadcastable to ``v``."""

    s: torch.Tensor

    def __post_init__(self) -> None:
        pass  # s is a data-dependent tensor, checked positive where it is made

    def derivative(self, v: torch.Tensor) -> torch.Tensor:  # noqa: D102
        s = self.s.to(v.dtype)
        return torch.exp(-((v - 0.5 * s) ** 2) / (2 * s * s)) / (math.sqrt(2 * math.pi) * s)


@dataclass(frozen=True)
class AdaptiveArcTan(Surrogate):
    """ASSG's surrogate for one neuron layer and step: the arctan shape with a sharpness from running statistics of
    ``|v|`` kept in ``mode.stats[key]`` (updated on each call unless ``frozen``)."""

    mode: ASSG
    key: tuple
    a: float
    frozen: bool

    def __post_init__(self) -> None:
        pass

    def derivative(self, v: torch.Tensor) -> torch.Tensor:  # noqa: D102
        mode, absv = self.mode, v.abs()
        m, d = mode.stats.get(self.key, (None, None))
        if m is not None and m.shape[1:] == v.shape[1:] and self.frozen and v.shape[0] % m.shape[0] == 0:
            m, d = (t.repeat(v.shape[0] // m.shape[0], *[1] * (v.dim() - 1)) for t in (m, d))
        elif m is None or m.shape != v.shape:
            m, d = torch.ones_like(v), torch.zeros_like(v)
        if not self.frozen:
            m = mode.beta * m + (1 - mode.beta) * absv
            d = mode.beta * d + (1 - mode.beta) * (absv - m).abs()
            mode.stats[self.key] = (m, d)
        alpha = self.a / (m + mode.relax * d + 1e-4)
        return (alpha / 2) / (1 + (math.pi / 2 * alpha * v) ** 2)


_FROZEN: ContextVar[bool] = ContextVar("spikeshield_frozen_statistics", default=False)


@contextmanager
def frozen_statistics() -> Iterator[None]:
    """Within the block, stateful modes (ASSG) use their statistics without updating them (EOT draws after the
    first)."""
    token = _FROZEN.set(True)
    try:
        yield
    finally:
        _FROZEN.reset(token)

Gradient = Surrogate | BackwardMode

_OVERRIDE: ContextVar[Gradient | None] = ContextVar("spikeshield_gradient_override", default=None)


def gradient_names() -> list[str]:
    """Every valid gradient name: ``own``, the surrogates, the rate modes and the model-level ``ann``."""
    return sorted(["own", *SURROGATES, *BACKWARD_MODES, *MODEL_GRADIENTS])


def make_gradient(spec: str | Gradient | dict | None, **params: float) -> Gradient | None:
    """A surrogate or a rate-based mode from a name, a ``{"name": ..., param: ...}`` dict or an instance.

    ``None`` and ``"own"`` give None (each neuron's own surrogate). Unknown names raise a ``ValueError`` listing
    the valid ones; ``"ann"`` raises one saying where the ANN-twin gradient lives.

    >>> make_gradient("rga")
    RGA(gamma=0.2)
    """
    if spec is None or spec == "own":
        return None
    if isinstance(spec, Surrogate | BackwardMode):
        return spec
    name = spec.get("name", "") if isinstance(spec, dict) else spec
    if not isinstance(name, str):
        raise TypeError(f"a gradient is a name, a dict with a 'name' or an instance; got {type(spec).__name__}")
    if name in MODEL_GRADIENTS:
        raise ValueError(f"{name!r} replaces the whole model's backward, not a neuron's: use Attack(..., "
                         f"grad={name!r}) or spikeshield.attacks.with_ann_gradients(model)")
    if name in BACKWARD_MODES:
        if isinstance(spec, dict):
            params = {**{k: v for k, v in spec.items() if k != "name"}, **params}
        try:
            return BACKWARD_MODES[name](**params)
        except TypeError:
            fields = list(BACKWARD_MODES[name].__dataclass_fields__)
            raise ValueError(f"backward mode {name!r} takes parameters {fields}; got {sorted(params)}") from None
    if name not in SURROGATES:
        raise unknown_name("surrogate or gradient mode", name, gradient_names())
    return make_surrogate(spec, **params)


def gradient_name(gradient: Gradient) -> str:
    """Registry name of a surrogate or mode instance."""
    if isinstance(gradient, BackwardMode):
        return gradient.name
    return next(name for name, cls in SURROGATES.items() if type(gradient) is cls)


@contextmanager
def gradient_mode(gradient: str | Gradient | dict | None, **params: float) -> Iterator[None]:
    """Within the block, every spiking neuron back-propagates through ``gradient`` instead of its own surrogate.

    ``gradient`` is a surrogate (``"triangle"``, ``"exponential"``, ...) or a backward mode (``"bptr"``, ``"rga"``,
    ``"hart"``, ``"hart-mix"``, ``"pdsg"``, ``"assg"``); ``params`` its parameters. ``None`` (or ``"own"``) keeps
    each neuron's own surrogate. The forward is unchanged; the previous mode is restored when the block ends, also on
    an exception.

    >>> with gradient_mode("triangle", gamma=0.5):
    ...     loss = F.cross_entropy(model(x), y)   # doctest: +SKIP
    >>> with gradient_mode("rga"):
    ...     loss = F.cross_entropy(model(x), y)   # doctest: +SKIP
    """
    token = _OVERRIDE.set(make_gradient(gradient, **params))
    try:
        yield
    finally:
        _OVERRIDE.reset(token)


def active_surrogate(own: Surrogate) -> Surrogate:
    """The surrogate a neuron must use now: the attacker's surrogate if one is active, else its own."""
    override = _OVERRIDE.get()
    return override if isinstance(override, Surrogate) else own


def active_mode() -> BackwardMode | None:
    """The rate-based backward mode active now, or None (then neurons use their surrogate)."""
    override = _OVERRIDE.get()
    return override if isinstance(override, BackwardMode) else None


class _Spike(torch.autograd.Function):
    """Exact Heaviside forward (strict ``v > 0``), surrogate backward, in train and eval mode alike."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(v)
        ctx.surrogate = surrogate
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        (v,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(v), None


def spike(v: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
    """Spike where ``v = u - theta > 0``; the backward uses ``surrogate`` (or the attacker's override)."""
    return _Spike.apply(v, active_surrogate(surrogate))
