"""Compiled CPU kernels for the fused TA-LIF (+ PSC) forward and BPTT backward (METHODS 1).

As :mod:`spikeshield.neurons.lif_kernels`, with the adaptive threshold ``theta[t] = theta[t-1] + theta_v (u[t] -
NDS[t])`` kept in registers beside the membrane. The backward carries two adjoints per neuron, of the membrane and of
the threshold, and also returns the gradient of ``theta_v``. Tests check both against the step loop under autograd.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from spikeshield.neurons.lif_kernels import _BLOCK, _CHUNK, _flat, _typed


@njit(parallel=True, cache=True)
def _forward(current, decay, scale, theta0, theta_v, nds, syn_decay, syn_scale, one, zero, membrane, theta, out):
    steps, n = current.shape
    neurons = theta_v.shape[0]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo = b * _BLOCK
        m = min(_BLOCK, n - lo)
        u = np.zeros(m, current.dtype)
        th = np.full(m, theta0, current.dtype)
        keep = np.zeros(m, current.dtype)  # 1 - s[t-1]
        a = np.zeros(m, current.dtype)
        for t in range(steps):
            for j in range(m):
                k = (lo + j) % neurons
                uj = scale * current[t, lo + j] + decay * (u[j] * keep[j])
                thj = th[j] + theta_v[k] * (uj - nds[t, k])
                sj = one if uj - thj > zero else zero
                u[j] = uj
                th[j] = thj
                keep[j] = one - sj
                membrane[t, lo + j] = uj
                theta[t, lo + j] = thj
                a[j] = sj + syn_decay * a[j]
                out[t, lo + j] = a[j] * syn_scale if syn_scale > zero else sj


@njit(parallel=True, cache=True)
def _backward(grad_out, membrane, theta, slope, offset, theta_v, nds, decay, scale, detach_reset, syn_decay,
              syn_scale, zero, grad, grad_v):
    steps, n = grad_out.shape
    neurons = theta_v.shape[0]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo = b * _BLOCK
        m = min(_BLOCK, n - lo)
        g_u = np.zeros(m, grad_out.dtype)  # dL/du[t+1]
        g_th = np.zeros(m, grad_out.dtype)  # dL/dtheta[t+1]
        filtered = np.zeros(m, grad_out.dtype)
        for t in range(steps - 1, -1, -1):
            for j in range(m):
                k = (offset + lo + j) % neurons
                g_s = grad_out[t, lo + j]
                if syn_scale > zero:
                    filtered[j] = g_s + syn_decay * filtered[j]
                    g_s = filtered[j] * syn_scale
                uj = membrane[t, lo + j]
                carried = g_u[j] * decay  # u[t+1] = decay u[t] (1 - s[t]) + c I[t+1]
                if not detach_reset:
                    g_s = g_s - carried * uj
                g_z = g_s * slope[t, lo + j]  # s[t] = H(u[t] - theta[t])
                g_th[j] = g_th[j] - g_z  # theta[t+1] = theta[t] + ...
                fired = uj - theta[t, lo + j] > zero
                g_u[j] = g_z + theta_v[k] * g_th[j] + (zero if fired else carried)
                grad_v[lo + j] += g_th[j] * (uj - nds[t, k])
                grad[t, lo + j] = g_u[j] * scale


def forward(current, decay, scale, theta0, theta_v, nds, tau_s):
    """Returns ``(output, pre-reset membrane, threshold)``, all ``[T, B, ...]``; output is the spikes, or their PSC
    if ``tau_s`` is given. ``theta_v`` is ``[*shape]`` and ``nds`` ``[T, *shape]``."""
    membrane = torch.empty_like(current, memory_format=torch.contiguous_format)
    theta, out = torch.empty_like(membrane), torch.empty_like(membrane)
    syn_decay, syn_scale = (1 - 1 / tau_s, 1 / tau_s) if tau_s else (0.0, 0.0)
    c = _typed(current, decay, scale, theta0)
    s = _typed(current, syn_decay, syn_scale, 1, 0)
    v, signature = _parameters(theta_v, nds, current.dtype)
    _forward(_flat(current), *c, v, signature, *s, _flat(membrane), _flat(theta), _flat(out))
    return out, membrane, theta


def backward(grad_out, membrane, theta, theta_v, nds, decay, scale, detach_reset, tau_s, surrogate):
    """``(input-current gradient, theta_v gradient)`` of :func:`forward`'s output for upstream gradient ``grad_out``.

    The surrogate's derivative at ``u - theta`` is evaluated by PyTorch on cache-sized chunks of neurons, each chunk
    then run through the compiled reverse-time loop.
    """
    grad = torch.empty_like(membrane)
    grad_v = torch.zeros(membrane[0].numel(), dtype=membrane.dtype)
    syn_decay, syn_scale = (1 - 1 / tau_s, 1 / tau_s) if tau_s else (0.0, 0.0)
    decay, scale, syn_decay, syn_scale, zero = _typed(membrane, decay, scale, syn_decay, syn_scale, 0)
    v, signature = _parameters(theta_v, nds, membrane.dtype)
    flat = [x.reshape(x.shape[0], -1) for x in (grad_out.to(membrane.dtype).contiguous(), membrane, theta, grad)]
    for lo in range(0, flat[1].shape[1], _CHUNK):
        chunk = slice(lo, lo + _CHUNK)
        g_out, mem, th, g = (x[:, chunk] for x in flat)
        slope = surrogate.derivative(mem - th)
        _backward(g_out.numpy(), mem.numpy(), th.numpy(), slope.numpy(), lo, v, signature, decay, scale, detach_reset,
                  syn_decay, syn_scale, zero, g.numpy(), grad_v[chunk].numpy())
    return grad, grad_v.reshape(membrane.shape[1], *theta_v.shape).sum(0).to(theta_v.dtype)


def _parameters(theta_v: torch.Tensor, nds: torch.Tensor, dtype: torch.dtype) -> tuple[np.ndarray, np.ndarray]:
    """``theta_v`` flat ``[N]`` and the NDS ``[T, N]`` as arrays in the kernels' precision."""
    v = theta_v.detach().to(dtype).contiguous().reshape(-1)
    return v.numpy(), nds.detach().to(dtype).contiguous().reshape(nds.shape[0], -1).numpy()
