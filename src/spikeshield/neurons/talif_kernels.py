"""Compiled CPU kernels for the fused TA-LIF (+ PSC) forward and BPTT backward (METHODS 1).

As :mod:`spikeshield.neurons.lif_kernels`, with the adaptive threshold ``theta[t] = theta[t-1] + theta_v (u[t] -
NDS[t])`` kept in registers beside the membrane. The backward carries two adjoints per neuron, of the membrane and of
the threshold, and also returns the gradient of ``theta_v``. Tests check both against the step loop under autograd.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from spikeshield.neurons.lif_kernels import _BLOCK, _CHUNK, _start_quiet_thread_pool, _typed, synapse_factors


@njit(parallel=True, cache=True)
def _forward(current, decay, scale, theta0, theta_v, nds, syn_decay, syn_scale, one, zero, membrane, theta, out):
    steps, batch, n = current.shape
    blocks = (n + _BLOCK - 1) // _BLOCK
    for item in prange(batch * blocks):
        i, lo = item // blocks, (item % blocks) * _BLOCK
        m = min(_BLOCK, n - lo)
        u = np.zeros(m, current.dtype)
        th = np.full(m, theta0, current.dtype)
        keep = np.zeros(m, current.dtype)  # 1 - s[t-1]
        a = np.zeros(m, current.dtype)
        for t in range(steps):
            for j in range(m):
                k = lo + j
                uj = scale * current[t, i, k] + decay * (u[j] * keep[j])
                thj = th[j] + theta_v[k] * (uj - nds[t, k])
                sj = one if uj - thj > zero else zero
                u[j] = uj
                th[j] = thj
                keep[j] = one - sj
                membrane[t, i, k] = uj
                theta[t, i, k] = thj
                a[j] = sj + syn_decay * a[j]
                out[t, i, k] = a[j] * syn_scale if syn_scale > zero else sj


@njit(parallel=True, cache=True)
def _backward(grad_out, membrane, theta, slope, theta_v, nds, decay, scale, detach_reset, syn_decay, syn_scale, zero,
              grad, grad_v):
    steps, batch, n = grad_out.shape
    blocks = (n + _BLOCK - 1) // _BLOCK
    for item in prange(batch * blocks):
        i, lo = item // blocks, (item % blocks) * _BLOCK
        m = min(_BLOCK, n - lo)
        g_u = np.zeros(m, grad_out.dtype)  # dL/du[t+1]
        g_th = np.zeros(m, grad_out.dtype)  # dL/dtheta[t+1]
        filtered = np.zeros(m, grad_out.dtype)
        for t in range(steps - 1, -1, -1):
            for j in range(m):
                k = lo + j
                g_s = grad_out[t, i, k]
                if syn_scale > zero:
                    filtered[j] = g_s + syn_decay * filtered[j]
                    g_s = filtered[j] * syn_scale
                uj = membrane[t, i, k]
                carried = g_u[j] * decay  # u[t+1] = decay u[t] (1 - s[t]) + c I[t+1]
                if not detach_reset:
                    g_s = g_s - carried * uj
                g_z = g_s * slope[t, i, k]  # s[t] = H(u[t] - theta[t])
                g_th[j] = g_th[j] - g_z  # theta[t+1] = theta[t] + ...
                fired = uj - theta[t, i, k] > zero
                g_u[j] = g_z + theta_v[k] * g_th[j] + (zero if fired else carried)
                grad_v[i, k] += g_th[j] * (uj - nds[t, k])
                grad[t, i, k] = g_u[j] * scale


def forward(current, decay, scale, theta0, theta_v, nds, tau_s):
    """Returns ``(output, pre-reset membrane, threshold)``, all ``[T, B, ...]``; output is the spikes, or their PSC
    if ``tau_s`` is given. ``theta_v`` is ``[*shape]`` and ``nds`` ``[T, *shape]``."""
    _start_quiet_thread_pool()
    membrane = torch.empty_like(current, memory_format=torch.contiguous_format)
    theta, out = torch.empty_like(membrane), torch.empty_like(membrane)
    syn_decay, syn_scale = synapse_factors(tau_s)
    c = _typed(current, decay, scale, theta0)
    s = _typed(current, syn_decay, syn_scale, 1, 0)
    v, signature = _parameters(theta_v, nds, current.dtype)
    _forward(_per_sample(current), *c, v, signature, *s, *(_per_sample(x) for x in (membrane, theta, out)))
    return out, membrane, theta


def backward(grad_out, membrane, theta, theta_v, nds, decay, scale, detach_reset, tau_s, surrogate):
    """``(input-current gradient, theta_v gradient)`` of :func:`forward`'s output for upstream gradient ``grad_out``.

    The surrogate's derivative at ``u - theta`` is evaluated by PyTorch on cache-sized chunks of the batch, each
    chunk then run through the compiled reverse-time loop.
    """
    _start_quiet_thread_pool()
    grad = torch.empty_like(membrane)
    grad_v = torch.zeros(membrane.shape[1], theta_v.numel(), dtype=membrane.dtype)
    syn_decay, syn_scale = synapse_factors(tau_s)
    decay, scale, syn_decay, syn_scale, zero = _typed(membrane, decay, scale, syn_decay, syn_scale, 0)
    v, signature = _parameters(theta_v, nds, membrane.dtype)
    views = [x.reshape(x.shape[0], x.shape[1], -1) for x in (grad_out.to(membrane.dtype).contiguous(), membrane, theta,
                                                               grad)]
    rows = max(1, _CHUNK // theta_v.numel())  # samples per chunk
    for lo in range(0, membrane.shape[1], rows):
        g_out, mem, th, g = (x[:, lo:lo + rows] for x in views)
        slope = surrogate.derivative(mem - th)
        _backward(g_out.numpy(), mem.numpy(), th.numpy(), slope.numpy(), v, signature, decay, scale, detach_reset,
                  syn_decay, syn_scale, zero, g.numpy(), grad_v[lo:lo + rows].numpy())
    return grad, grad_v.sum(0).reshape(theta_v.shape).to(theta_v.dtype)


def _per_sample(x: torch.Tensor) -> np.ndarray:
    """``[T, B, ...]`` as a ``[T, B, N]`` array (a view of a contiguous tensor)."""
    return x.detach().contiguous().reshape(x.shape[0], x.shape[1], -1).numpy()


def _parameters(theta_v: torch.Tensor, nds: torch.Tensor, dtype: torch.dtype) -> tuple[np.ndarray, np.ndarray]:
    """``theta_v`` flat ``[N]`` and the NDS ``[T, N]`` as arrays in the kernels' precision."""
    v = theta_v.detach().to(dtype).contiguous().reshape(-1)
    return v.numpy(), nds.detach().to(dtype).contiguous().reshape(nds.shape[0], -1).numpy()
