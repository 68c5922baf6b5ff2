"""Compiled CPU kernels for the fused LIF (+ PSC) forward and BPTT backward.

One pass over memory per call: each neuron's T steps run in registers, blocks of neurons in parallel (numba
``prange``); the backward evaluates the surrogate's derivative with PyTorch on cache-sized chunks, so any surrogate
works. They compute what :func:`spikeshield.neurons.lif._loop_forward` / ``_loop_backward`` compute (the path for
GPU tensors and other dtypes); tests check both against :func:`spikeshield.neurons.lif.lif_step` under autograd.
"""

from __future__ import annotations

import os

import numba
import numpy as np
import torch
from numba import njit, prange
from numba.np.ufunc import parallel as _numba_parallel

_pool_started = False


def _start_quiet_thread_pool() -> None:
    """Start numba's worker threads with a passive wait policy (once; every kernel entry point calls it first).

    numba's OpenMP pool is a second runtime beside PyTorch's. With the default policy its idle workers spin for a
    while after each kernel, taking the cores PyTorch's next operation needs; passive workers sleep at once. The
    variable is read only when the pool starts (PyTorch's own pool started earlier and keeps its settings), and
    the environment is restored right after, and so is PyTorch's thread count, which starting the pool resets to the
    core count (ignoring ``OMP_NUM_THREADS``). Started on first kernel use, not at import, so ``import spikeshield``
    starts no threads.
    """
    global _pool_started
    if _pool_started:
        return
    saved, torch_threads = os.environ.get("OMP_WAIT_POLICY"), torch.get_num_threads()
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        _numba_parallel._launch_threads()
    finally:
        if saved is None:
            del os.environ["OMP_WAIT_POLICY"]
        else:
            os.environ["OMP_WAIT_POLICY"] = saved
        torch.set_num_threads(torch_threads)
    _pool_started = True


def set_threads(n: int) -> None:
    """Run the compiled kernels (all of spikeshield's numba kernels) on ``n`` worker threads of the calling thread
    (at most the pool's size); starts the pool. A distributed run gives each process its share of the cores."""
    _start_quiet_thread_pool()
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))


def supported(current: torch.Tensor) -> bool:
    """True if the compiled kernels can run on this tensor (CPU, float32 or float64)."""
    return current.device.type == "cpu" and current.dtype in (torch.float32, torch.float64)


_BLOCK = 2048  # neurons per work item: state fits in L1, inner loops over neurons vectorise
_CHUNK = 1 << 15  # neurons per backward chunk: T steps of surrogate slopes stay in cache


@njit(parallel=True, cache=True)
def _forward(current, decay, scale, theta, syn_decay, syn_scale, one, zero, membrane, out):
    steps, n = current.shape
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo = b * _BLOCK
        m = min(_BLOCK, n - lo)
        u = np.zeros(m, current.dtype)
        keep = np.zeros(m, current.dtype)  # 1 - s[t-1]
        a = np.zeros(m, current.dtype)
        for t in range(steps):
            for j in range(m):
                uj = scale * current[t, lo + j] + decay * (u[j] * keep[j])
                sj = one if uj > theta else zero
                u[j] = uj
                keep[j] = one - sj
                membrane[t, lo + j] = uj
                a[j] = sj + syn_decay * a[j]
                out[t, lo + j] = a[j] * syn_scale if syn_scale > zero else sj


@njit(parallel=True, cache=True)
def _backward(grad_out, membrane, slope, decay, scale, theta, detach_reset, syn_decay, syn_scale, zero, grad):
    steps, n = grad_out.shape
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo = b * _BLOCK
        m = min(_BLOCK, n - lo)
        g_next = np.zeros(m, grad_out.dtype)
        filtered = np.zeros(m, grad_out.dtype)
        for t in range(steps - 1, -1, -1):
            last = t == steps - 1 or decay == zero
            for j in range(m):
                g_s = grad_out[t, lo + j]
                if syn_scale > zero:
                    filtered[j] = g_s + syn_decay * filtered[j]
                    g_s = filtered[j] * syn_scale
                uj = membrane[t, lo + j]
                if last:
                    g_u = g_s * slope[t, j + lo]
                else:
                    carried = g_next[j] * decay
                    if not detach_reset:
                        g_s = g_s - carried * uj
                    g_u = g_s * slope[t, j + lo] + (zero if uj > theta else carried)
                g_next[j] = g_u
                grad[t, lo + j] = g_u * scale


def synapse_factors(tau_s: float | None) -> tuple[float, float]:
    """``(decay, scale)`` of the PSC filter ``a[t] = decay a[t-1] + s[t]``, output ``scale a[t]``; zeros without one."""
    return (1 - 1 / tau_s, 1 / tau_s) if tau_s else (0.0, 0.0)


def _typed(like: torch.Tensor, *values: float) -> tuple:
    """Scalars in the tensor's precision, so float32 kernels never promote to float64."""
    cast = np.float32 if like.dtype == torch.float32 else np.float64
    return tuple(cast(v) for v in values)


def _flat(x: torch.Tensor) -> np.ndarray:
    return x.detach().contiguous().reshape(x.shape[0], -1).numpy()


def forward(current: torch.Tensor, decay: float, scale: float, theta: float, tau_s: float | None):
    """Returns ``(output, pre-reset membrane)``: output is the spikes, or their PSC if ``tau_s`` is given."""
    _start_quiet_thread_pool()
    membrane = torch.empty_like(current, memory_format=torch.contiguous_format)
    out = torch.empty_like(membrane)
    syn_decay, syn_scale = synapse_factors(tau_s)
    c = _typed(current, decay, scale, theta, syn_decay, syn_scale, 1, 0)
    _forward(_flat(current), *c, _flat(membrane), _flat(out))
    return out, membrane


def backward(grad_out, membrane, decay, scale, theta, detach_reset, tau_s, surrogate) -> torch.Tensor:
    """Input-current gradient of :func:`forward`'s output for upstream gradient ``grad_out``.

    The surrogate's derivative is evaluated by PyTorch (vectorised, any surrogate) on cache-sized chunks of neurons,
    each chunk then run through the compiled reverse-time loop.
    """
    _start_quiet_thread_pool()
    grad = torch.empty_like(membrane)
    syn_decay, syn_scale = synapse_factors(tau_s)
    decay, scale, theta, syn_decay, syn_scale, zero = _typed(membrane, decay, scale, theta, syn_decay, syn_scale, 0)
    grad_out, membrane_flat, grad_flat = (x.reshape(x.shape[0], -1) for x in (grad_out.to(membrane.dtype).contiguous(),
                                                                             membrane, grad))
    for lo in range(0, membrane_flat.shape[1], _CHUNK):
        chunk = slice(lo, lo + _CHUNK)
        mem = membrane_flat[:, chunk]
        slope = surrogate.derivative(mem - float(theta))
        _backward(grad_out[:, chunk].numpy(), mem.numpy(), slope.numpy(), decay, scale, theta, detach_reset,
                  syn_decay, syn_scale, zero, grad_flat[:, chunk].numpy())
    return grad
