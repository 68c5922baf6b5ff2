"""Compiled CPU kernels for neurons with a leak per neuron (and per step): RandHet, RandHet* and Het (METHODS 2).

``u[t] = k[t] u[t-1] (1 - s[t-1]) + (1 - k[t]) I[t]``, ``s[t] = H(u[t] - theta)``, reset detached, optionally filtered
by a PSC. As :mod:`spikeshield.neurons.lif_kernels`: one pass over memory, neurons in parallel blocks, the surrogate's
derivative evaluated by PyTorch on cache-sized chunks. The backward also returns ``dL/dk`` when asked (Het learns its
leak). :func:`loop_forward` / :func:`loop_backward` compute the same with PyTorch ops, for GPU tensors.

The leaks are either a tensor ``[T or 1, N]`` (a leak per step, or one for all steps) or a :class:`LeakDraw`: random
leaks ``k = sigmoid(sigma z)`` computed inside the kernel from a seed (RandHet). ``z`` is the standard normal's
quantile at a uniform 16-bit level, ``Phi^-1((i + 1/2) / 2^16)``; ``i`` is lane ``p mod 4`` of a counter-based
SplitMix64 hash of ``(seed, p div 4)`` at position ``p``. The same numbers on every device, thread count and block
size, recomputed in the backward instead of stored, at a fraction of the cost of ``torch.randn`` (which alone added
~25% to a LeNet training step). The distribution is the normal's up to a Kolmogorov distance of ``2^-17`` (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from numba import njit, prange

from spikeshield.neurons.lif_kernels import _BLOCK, _CHUNK, _flat, _start_quiet_thread_pool, _typed, synapse_factors

LEVELS = 1 << 16  # quantile levels of z
_GAMMA, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB  # SplitMix64 (Steele et al. 2014)
_U_GAMMA, _U_MIX1, _U_MIX2 = np.uint64(_GAMMA), np.uint64(_MIX1), np.uint64(_MIX2)
_U30, _U27, _U31, _U_LEVEL_MASK = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(LEVELS - 1)


@lru_cache(maxsize=32)
def leak_table(sigma: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``sigmoid(sigma Phi^-1((i + 1/2) / 2^16))`` for the 2^16 levels ``i``: the leaks a draw picks from."""
    levels = (torch.arange(LEVELS, dtype=torch.float64) + 0.5) / LEVELS
    return torch.sigmoid(sigma * torch.special.ndtri(levels)).to(dtype)


@dataclass(frozen=True)
class LeakDraw:
    """Random leaks of one forward pass, defined by a ``seed``: at position ``(t, n)`` of ``[T, N]`` neurons
    ``table[level(seed, t N + n)]`` (``per_step``), or ``table[level(seed, n)]`` for all steps."""

    seed: int
    table: torch.Tensor
    per_step: bool

    def materialize(self, shape: torch.Size, device: torch.device | None = None) -> torch.Tensor:
        """The leaks as a tensor ``[T or 1, *shape[1:]]`` for currents of ``shape`` (PyTorch ops, any device)."""
        count = math.prod(shape) if self.per_step else math.prod(shape[1:])
        index = torch.arange(count, dtype=torch.int64, device=device)
        table = self.table.to(device)
        return table[_levels(self.seed, index)].reshape(-1, *shape[1:])


def _signed(value: int) -> int:
    """A 64-bit pattern as PyTorch's int64 (wrapping arithmetic gives the unsigned hash's bits)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _levels(seed: int, index: torch.Tensor) -> torch.Tensor:
    """Position ``p``'s 16-bit level: lane ``p mod 4`` of SplitMix64's output for ``seed + (p div 4) gamma`` (int64
    tensors with wrapping arithmetic; the logical shifts masked)."""
    x = (index >> 2) * _signed(_GAMMA) + _signed(seed)
    x = (x ^ ((x >> 30) & ((1 << 34) - 1))) * _signed(_MIX1)
    x = (x ^ ((x >> 27) & ((1 << 37) - 1))) * _signed(_MIX2)
    x = x ^ ((x >> 31) & ((1 << 33) - 1))
    return (x >> (16 * (index & 3))) & (LEVELS - 1)


@njit(inline="always")
def _hash(seed, counter):
    x = seed + counter * _U_GAMMA
    x = (x ^ (x >> _U30)) * _U_MIX1
    x = (x ^ (x >> _U27)) * _U_MIX2
    return x ^ (x >> _U31)


@njit(inline="always")
def _lane(table, h, lane):
    return table[(h >> np.uint64(16 * lane)) & _U_LEVEL_MASK]


@njit(inline="always")
def _fill_drawn(table, seed, start, out):
    """Drawn leaks at positions ``start, start + 1, ...``: a partial group up to a multiple of 4, whole groups of
    four lanes per hash (the hot loop, branch-free), then a partial group."""
    m = out.shape[0]
    head = min((4 - start % 4) % 4, m)
    for j in range(head):
        out[j] = _lane(table, _hash(seed, np.uint64((start + j) >> 2)), (start + j) & 3)
    groups = (m - head) // 4
    first = np.uint64((start + head) >> 2)
    for q in range(groups):
        h = _hash(seed, first + np.uint64(q))
        j = head + 4 * q
        out[j] = _lane(table, h, 0)
        out[j + 1] = _lane(table, h, 1)
        out[j + 2] = _lane(table, h, 2)
        out[j + 3] = _lane(table, h, 3)
    h = _hash(seed, first + np.uint64(groups))
    for j in range(head + 4 * groups, m):
        out[j] = _lane(table, h, j - head - 4 * groups)


@njit(inline="always")
def _fill_leaks(leak, table, seed, per_step, n, t, first, out):
    """The leaks at step ``t`` of neurons ``first, first + 1, ...`` into ``out``: drawn (table entries at the hashed
    levels) when there is a table, else read from the leak array."""
    if table.shape[0] > 1:
        _fill_drawn(table, seed, t * n + first if per_step else first, out)
    else:
        row = t if per_step else 0
        for j in range(out.shape[0]):
            out[j] = leak[row, first + j]


@njit(parallel=True, cache=True)
def _forward(current, leak, table, seed, per_step, theta, syn_decay, syn_scale, one, zero, membrane, out):
    steps, n = current.shape
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo = b * _BLOCK
        m = min(_BLOCK, n - lo)
        u = np.zeros(m, current.dtype)  # u[t-1] (1 - s[t-1])
        a = np.zeros(m, current.dtype)
        k = np.empty(m, current.dtype)
        for t in range(steps):
            if per_step or t == 0:
                _fill_leaks(leak, table, seed, per_step, n, t, lo, k)
            for j in range(m):
                uj = (one - k[j]) * current[t, lo + j] + k[j] * u[j]
                sj = one if uj > theta else zero
                u[j] = zero if uj > theta else uj
                membrane[t, lo + j] = uj
                a[j] = sj + syn_decay * a[j]
                out[t, lo + j] = a[j] * syn_scale if syn_scale > zero else sj


@njit(parallel=True, cache=True)
def _backward(grad_out, membrane, leak, table, seed, per_step, first, n, slope, current, theta, syn_decay, syn_scale,
              one, zero, want_leak, grad, grad_leak):
    steps, m_all = grad_out.shape
    for b in prange((m_all + _BLOCK - 1) // _BLOCK):
        lo = b * _BLOCK
        m = min(_BLOCK, m_all - lo)
        carried = np.zeros(m, grad_out.dtype)  # k[t+1] dL/du[t+1], zero where s[t] = 1 (detached reset)
        filtered = np.zeros(m, grad_out.dtype)
        k = np.empty(m, grad_out.dtype)
        g_u = np.empty(m, grad_out.dtype)
        for t in range(steps - 1, -1, -1):
            if per_step or t == steps - 1:
                _fill_leaks(leak, table, seed, per_step, n, t, first + lo, k)  # leak arrays: all N neurons
            for j in range(m):
                g_s = grad_out[t, lo + j]
                if syn_scale > zero:
                    filtered[j] = g_s + syn_decay * filtered[j]
                    g_s = filtered[j] * syn_scale
                g_u[j] = g_s * slope[t, lo + j] + (zero if membrane[t, lo + j] > theta else carried[j])
                grad[t, lo + j] = g_u[j] * (one - k[j])
                carried[j] = g_u[j] * k[j]
            if want_leak:  # du[t]/dk[t] = u[t-1] (1 - s[t-1]) - I[t]
                row = t if per_step else 0
                for j in range(m):
                    prev = membrane[t - 1, lo + j] if t > 0 else zero
                    prev = zero if prev > theta else prev
                    grad_leak[row, first + lo + j] += g_u[j] * (prev - current[t, lo + j])


def _leak_arguments(leak: torch.Tensor | LeakDraw, dtype: torch.dtype) -> tuple:
    """``(leak array, table, seed, per_step)`` for the kernels: a tensor's values, or a draw's table and seed."""
    cast = np.float32 if dtype == torch.float32 else np.float64
    if isinstance(leak, LeakDraw):
        return np.zeros((1, 1), cast), leak.table.to(dtype).numpy(), np.uint64(leak.seed), leak.per_step
    return _flat(leak.to(dtype)), np.zeros(1, cast), np.uint64(0), leak.shape[0] > 1


def forward(current: torch.Tensor, leak: torch.Tensor | LeakDraw, theta: float, tau_s: float | None):
    """``(output, pre-reset membrane)`` for currents ``[T, ...]`` and leaks ``[T or 1, ...]`` of the same neurons (or
    a :class:`LeakDraw`)."""
    _start_quiet_thread_pool()
    membrane = torch.empty_like(current, memory_format=torch.contiguous_format)
    out = torch.empty_like(membrane)
    c = _typed(current, theta, *synapse_factors(tau_s), 1, 0)
    _forward(_flat(current), *_leak_arguments(leak, current.dtype), *c, _flat(membrane), _flat(out))
    return out, membrane


def backward(grad_out, membrane, leak, current, theta, tau_s, surrogate) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(dL/dI, dL/dk or None)`` of :func:`forward`'s output; ``dL/dk`` (of a leak tensor) only when ``current``
    is given."""
    _start_quiet_thread_pool()
    grad = torch.empty_like(membrane)
    want_leak = current is not None
    grad_leak = membrane.new_zeros(leak.shape if want_leak else (1, 1))  # a placeholder when not wanted
    theta_, syn_decay, syn_scale, one, zero = _typed(membrane, theta, *synapse_factors(tau_s), 1, 0)
    steps = membrane.shape[0]
    grad_out = grad_out.to(membrane.dtype).contiguous().reshape(steps, -1)
    membrane_flat, grad_flat = membrane.reshape(steps, -1), grad.reshape(steps, -1)
    n = membrane_flat.shape[1]
    leak_args = _leak_arguments(leak, membrane.dtype)
    grad_leak_flat = grad_leak.reshape(grad_leak.shape[0], -1).numpy()
    current_flat = current.detach().to(membrane.dtype).contiguous().reshape(steps, -1) if want_leak else grad_out
    for lo in range(0, n, _CHUNK):
        chunk = slice(lo, lo + _CHUNK)
        mem = membrane_flat[:, chunk]
        slope = surrogate.derivative(mem - float(theta))
        _backward(grad_out[:, chunk].numpy(), mem.numpy(), *leak_args, lo, n, slope.numpy(),
                  current_flat[:, chunk].numpy(), theta_, syn_decay, syn_scale, one, zero, want_leak,
                  grad_flat[:, chunk].numpy(), grad_leak_flat)
    return grad, (grad_leak if want_leak else None)


def loop_forward(current: torch.Tensor, leak: torch.Tensor, theta: float, tau_s: float | None):
    """:func:`forward` as a short PyTorch loop of in-place ops (any device and dtype)."""
    membrane = torch.empty_like(current)
    out = torch.empty_like(current) if tau_s else None
    kept = None  # u[t-1] (1 - s[t-1])
    for t in range(current.shape[0]):
        k = leak[t if leak.shape[0] > 1 else 0]
        u = membrane[t]
        torch.mul(current[t], 1 - k, out=u)
        if kept is not None:
            u.addcmul_(k, kept)
        over = u > theta
        kept = u.masked_fill(over, 0)
        if out is not None:
            fired = over.to(current.dtype)
            if t == 0:
                out[0].copy_(fired)
            else:
                torch.add(fired, out[t - 1], alpha=1 - 1 / tau_s, out=out[t])
    return (out.mul_(1 / tau_s) if out is not None else (membrane > theta).to(current.dtype)), membrane


def loop_backward(grad_out, membrane, leak, current, theta, tau_s, surrogate):
    """:func:`backward` as a reverse PyTorch loop over time (any device and dtype)."""
    steps = grad_out.shape[0]
    grad = torch.empty_like(grad_out)
    grad_leak = torch.zeros_like(leak, dtype=grad.dtype) if current is not None else None
    filtered = torch.empty_like(grad_out[0]) if tau_s else None
    carried = None
    for t in range(steps - 1, -1, -1):
        k = leak[t if leak.shape[0] > 1 else 0]
        grad_s = grad_out[t]
        if filtered is not None:
            if t == steps - 1:
                filtered.copy_(grad_s)
            else:
                torch.add(grad_s, filtered, alpha=1 - 1 / tau_s, out=filtered)
            grad_s = filtered * (1 / tau_s)
        g_u = grad_s * surrogate.derivative(membrane[t] - theta)
        if carried is not None:
            g_u = g_u + carried.masked_fill(membrane[t] > theta, 0)
        grad[t] = g_u * (1 - k)
        carried = g_u * k
        if grad_leak is not None:
            prev = membrane[t - 1].masked_fill(membrane[t - 1] > theta, 0) if t > 0 else 0
            grad_leak[t if leak.shape[0] > 1 else 0] += g_u * (prev - current[t])
    return grad, grad_leak
