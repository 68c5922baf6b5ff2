"""Post-synaptic current (PSC) filter: ``a[t] = a[t-1] + (s[t] - a[t-1]) / tau_s`` with ``a[-1] = 0`` (METHODS 1)."""

from __future__ import annotations

import torch
from torch import nn

from spikeshield.neurons.recording import emit


def psc_kernel(T: int, tau_s: float, device=None, dtype=None) -> torch.Tensor:
    """The ``[T, T]`` lower-triangular matrix ``K`` with ``a = K @ s`` over the time axis."""
    t = torch.arange(T, device=device, dtype=dtype or torch.get_default_dtype())
    lag = t[:, None] - t[None, :]
    kernel = (1 - 1 / tau_s) ** lag.clamp_min(0) / tau_s
    return torch.where(lag >= 0, kernel, torch.zeros_like(kernel))


class PSC(nn.Module):
    """Filter spikes ``[T, B, ...]`` into post-synaptic currents of the same shape (one matmul over time)."""

    def __init__(self, tau_s: float = 3.0) -> None:
        super().__init__()
        if not tau_s >= 1:
            raise ValueError(f"PSC tau_s must be >= 1 time step; got {tau_s}")
        self.tau_s = float(tau_s)

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        """Filtered currents ``[T, B, ...]`` (recorded by :func:`~spikeshield.neurons.recording.record`)."""
        out = self.filter(spikes)
        emit(self, "psc", out)
        return out

    def filter(self, spikes: torch.Tensor) -> torch.Tensor:
        """The filter alone, ``[T, B, ...]`` -> ``[T, B, ...]``, without recording (a pure function of its input)."""
        T = spikes.shape[0]
        kernel = psc_kernel(T, self.tau_s, spikes.device, spikes.dtype)
        return (kernel @ spikes.reshape(T, -1)).reshape(spikes.shape)

    def extra_repr(self) -> str:
        return f"tau_s={self.tau_s}"
