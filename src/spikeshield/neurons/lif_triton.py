"""Triton kernels for the fused LIF and TA-LIF (+ PSC) forward and BPTT backward on the GPU.

The GPU twin of :mod:`spikeshield.neurons.lif_kernels` and :mod:`spikeshield.neurons.talif_kernels`: one program per
block of neurons keeps each neuron's state in registers over the T steps, so a layer's forward is one kernel launch
instead of a few per step (the PyTorch loop is launch-bound on a GPU: ``benchmarks/results/throughput_cuda.json``).
The backward takes the surrogate's derivative from PyTorch (one elementwise pass over ``[T, N]``, any surrogate, so
every gradient mode that reaches the fused node is honoured) and runs the reverse-time recurrence in one more
launch. TA-LIF keeps its adaptive threshold in registers beside the membrane and returns the gradient of ``theta_v``
too. The kernels compute what the CPU kernels and the step loops compute; with ``TRITON_INTERPRET=1`` they run on
CPU tensors in Triton's interpreter, which is how the tests check them on a machine without a GPU.

Triton is optional (``pip install spikeshield[gpu]``); without it, or off CUDA, :func:`supported` is False and the
neuron keeps its other paths.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

from spikeshield.neurons.lif_kernels import synapse_factors

#: neurons per Triton program
BLOCK = 512


def installed() -> bool:
    """True if Triton can be imported."""
    return importlib.util.find_spec("triton") is not None


def interpreted() -> bool:
    """True if Triton runs in its CPU interpreter (``TRITON_INTERPRET=1``), as the tests on a CPU machine do."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def supported(current: torch.Tensor) -> bool:
    """True if the Triton kernels run on this tensor: a CUDA (or, interpreted, a CPU) float32/float64 tensor."""
    if current.dtype not in (torch.float32, torch.float64) or not installed():
        return False
    return current.is_cuda or (interpreted() and current.device.type == "cpu")


@functools.cache
def _kernels(interpret: bool):
    """The jitted ``(forward, backward)`` kernels of LIF (``ADAPTIVE=False``) and TA-LIF (``ADAPTIVE=True``: the
    threshold adapts by ``theta_v (u - NDS)``, and the backward also returns ``theta_v``'s gradient), built on
    first use (so ``TRITON_INTERPRET`` is read then; one set per mode). They use Triton's builtins only: the
    ``triton.language`` functions written in Triton (``zeros``, ``zeros_like``, ...) are compiled or interpreted
    as Triton was first imported (SpikingJelly imports it), which breaks the interpreter. The step count is a
    compile-time constant (one build per T): Triton 3.6's interpreter cannot loop over a runtime count under
    numpy >= 2.5."""
    import triton
    import triton.language as tl

    @triton.jit
    def forward_kernel(current, theta_v, nds, membrane, threshold, out, n, width, STEPS: tl.constexpr, decay, scale,
                       theta0, syn_decay, syn_scale, ADAPTIVE: tl.constexpr, HAS_SYNAPSE: tl.constexpr,
                       BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)  # over B * width neurons
        mask = offs < n
        u = tl.full([BLOCK], 0.0, current.dtype.element_ty)
        th = u + theta0
        keep = tl.full([BLOCK], 0.0, current.dtype.element_ty)  # 1 - s[t-1]
        a = tl.full([BLOCK], 0.0, current.dtype.element_ty)
        if ADAPTIVE:  # TA-LIF: the neuron within a sample, its theta_v and NDS
            k = offs % width
            v = tl.load(theta_v + k, mask=mask, other=0.0)
        for t in range(STEPS):
            u = scale * tl.load(current + t * n + offs, mask=mask, other=0.0) + decay * (u * keep)
            if ADAPTIVE:
                th = th + v * (u - tl.load(nds + t * width + k, mask=mask, other=0.0))
                tl.store(threshold + t * n + offs, th, mask=mask)
                s = tl.where(u - th > 0.0, 1.0, 0.0).to(u.dtype)
            else:
                s = tl.where(u > th, 1.0, 0.0).to(u.dtype)
            keep = 1.0 - s
            tl.store(membrane + t * n + offs, u, mask=mask)
            if HAS_SYNAPSE:
                a = s + syn_decay * a
                tl.store(out + t * n + offs, a * syn_scale, mask=mask)
            else:
                tl.store(out + t * n + offs, s, mask=mask)

    @triton.jit
    def backward_kernel(grad_out, membrane, threshold, slope, theta_v, nds, grad, grad_v, n, width,
                        STEPS: tl.constexpr, decay, scale, theta0, syn_decay, syn_scale, ADAPTIVE: tl.constexpr,
                        HAS_SYNAPSE: tl.constexpr, DETACH_RESET: tl.constexpr, LEAKY: tl.constexpr,
                        BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        g_u = tl.full([BLOCK], 0.0, membrane.dtype.element_ty)  # dL/du[t+1]; zero after the last step
        g_th = tl.full([BLOCK], 0.0, membrane.dtype.element_ty)  # dL/dtheta[t+1] (TA-LIF)
        g_v = tl.full([BLOCK], 0.0, membrane.dtype.element_ty)
        filtered = tl.full([BLOCK], 0.0, membrane.dtype.element_ty)
        if ADAPTIVE:
            k = offs % width
            v = tl.load(theta_v + k, mask=mask, other=0.0)
        for r in range(STEPS):
            t = STEPS - 1 - r
            g_s = tl.load(grad_out + t * n + offs, mask=mask, other=0.0)
            if HAS_SYNAPSE:
                filtered = g_s + syn_decay * filtered
                g_s = filtered * syn_scale
            u = tl.load(membrane + t * n + offs, mask=mask, other=0.0)
            if LEAKY:
                carried = g_u * decay  # u[t+1] = decay u[t] (1 - s[t]) + c I[t+1]
            else:
                carried = tl.full([BLOCK], 0.0, membrane.dtype.element_ty)
            if not DETACH_RESET:
                g_s = g_s - carried * u
            g_z = g_s * tl.load(slope + t * n + offs, mask=mask, other=0.0)  # s[t] = H(u[t] - theta[t])
            if ADAPTIVE:
                g_th = g_th - g_z  # theta[t+1] = theta[t] + ...
                fired = u - tl.load(threshold + t * n + offs, mask=mask, other=0.0) > 0.0
                g_u = g_z + v * g_th + tl.where(fired, 0.0, carried)
                g_v += g_th * (u - tl.load(nds + t * width + k, mask=mask, other=0.0))
            else:
                g_u = g_z + tl.where(u > theta0, 0.0, carried)
            tl.store(grad + t * n + offs, g_u * scale, mask=mask)
        if ADAPTIVE:
            tl.store(grad_v + offs, g_v, mask=mask)

    return forward_kernel, backward_kernel


def _grid(n: int) -> tuple[int]:
    return ((n + BLOCK - 1) // BLOCK,)


def forward(current: torch.Tensor, decay: float, scale: float, theta: float, tau_s: float | None):
    """Returns ``(output, pre-reset membrane)`` of all T steps (as :func:`lif_kernels.forward`)."""
    current = current.contiguous()
    membrane, out = torch.empty_like(current), torch.empty_like(current)
    steps, n = current.shape[0], current[0].numel()
    syn_decay, syn_scale = synapse_factors(tau_s)
    forward_kernel = _kernels(interpreted())[0]
    unused = membrane  # the threshold arguments a LIF never reads (ADAPTIVE=False)
    forward_kernel[_grid(n)](current, unused, unused, membrane, unused, out, n, n, steps, float(decay), float(scale),
                             float(theta), float(syn_decay), float(syn_scale), ADAPTIVE=False,
                             HAS_SYNAPSE=bool(tau_s), BLOCK=BLOCK)
    return out, membrane


def backward(grad_out, membrane, decay, scale, theta, detach_reset, tau_s, surrogate) -> torch.Tensor:
    """Input-current gradient of :func:`forward`'s output for upstream gradient ``grad_out`` (BPTT through the
    membrane, the reset and the PSC filter; the spike's derivative is ``surrogate.derivative``)."""
    grad_out = grad_out.to(membrane.dtype).contiguous()
    slope = surrogate.derivative(membrane - float(theta)).contiguous()
    grad = torch.empty_like(membrane)
    steps, n = membrane.shape[0], membrane[0].numel()
    syn_decay, syn_scale = synapse_factors(tau_s)
    backward_kernel = _kernels(interpreted())[1]
    unused = membrane  # the threshold arguments a LIF never reads or writes (ADAPTIVE=False)
    backward_kernel[_grid(n)](grad_out, membrane, unused, slope, unused, unused, grad, unused, n, n, steps,
                              float(decay), float(scale), float(theta), float(syn_decay), float(syn_scale),
                              ADAPTIVE=False, HAS_SYNAPSE=bool(tau_s), DETACH_RESET=bool(detach_reset),
                              LEAKY=decay != 0, BLOCK=BLOCK)
    return grad


def talif_forward(current, decay, scale, theta0, theta_v, nds, tau_s):
    """TA-LIF's ``(output, pre-reset membrane, threshold)``, all ``[T, B, ...]`` (as
    :func:`talif_kernels.forward`); ``theta_v`` is ``[*shape]`` and ``nds`` ``[T, *shape]``."""
    current = current.contiguous()
    membrane, threshold, out = (torch.empty_like(current) for _ in range(3))
    steps, n, width = current.shape[0], current[0].numel(), theta_v.numel()
    theta_v, nds = (x.detach().to(current.dtype).contiguous() for x in (theta_v, nds))
    syn_decay, syn_scale = synapse_factors(tau_s)
    kernel = _kernels(interpreted())[0]
    kernel[_grid(n)](current, theta_v, nds, membrane, threshold, out, n, width, steps, float(decay), float(scale),
                     float(theta0), float(syn_decay), float(syn_scale), ADAPTIVE=True, HAS_SYNAPSE=bool(tau_s),
                     BLOCK=BLOCK)
    return out, membrane, threshold


def talif_backward(grad_out, membrane, threshold, theta_v, nds, decay, scale, detach_reset, tau_s, surrogate):
    """``(input-current gradient, theta_v gradient)`` of :func:`talif_forward`'s output (as
    :func:`talif_kernels.backward`)."""
    grad_out = grad_out.to(membrane.dtype).contiguous()
    slope = surrogate.derivative(membrane - threshold).contiguous()
    grad = torch.empty_like(membrane)
    steps, n, width = membrane.shape[0], membrane[0].numel(), theta_v.numel()
    grad_v = torch.empty(n, dtype=membrane.dtype, device=membrane.device)  # per sample and neuron, summed below
    v, signature = (x.detach().to(membrane.dtype).contiguous() for x in (theta_v, nds))
    syn_decay, syn_scale = synapse_factors(tau_s)
    kernel = _kernels(interpreted())[1]
    kernel[_grid(n)](grad_out, membrane, threshold, slope, v, signature, grad, grad_v, n, width, steps, float(decay),
                     float(scale), 0.0, float(syn_decay), float(syn_scale), ADAPTIVE=True, HAS_SYNAPSE=bool(tau_s),
                     DETACH_RESET=bool(detach_reset), LEAKY=True, BLOCK=BLOCK)
    return grad, grad_v.reshape(-1, width).sum(0).reshape(theta_v.shape).to(theta_v.dtype)
