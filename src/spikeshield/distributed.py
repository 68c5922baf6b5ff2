"""Running under ``torchrun``: the process group, this process's device and threads, and the few collectives the
trainer and the evaluation need (DESIGN 9).

``torchrun --nproc_per_node N -m spikeshield train --config F`` starts N processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE`` set; :func:`start` joins them (NCCL on CUDA, gloo on the CPU) and gives each
its device (``cuda:LOCAL_RANK``) and its share of the cores. Without those variables everything is one process and
every helper here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    """This process's place in the run: ``rank`` of ``world_size`` (``local_rank`` on its node) and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        """True under torchrun with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True for rank 0, the process that logs, plots and writes checkpoints."""
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of ``n`` items (the first ``n % world_size`` ranks take one more)."""
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def barrier(self) -> None:
        """Wait for every rank (no-op in one process)."""
        if self.distributed:
            dist.barrier()

    def owns(self, index: int) -> bool:
        """Whether item ``index`` of a stream dealt round-robin (item ``i`` to rank ``i % world_size``) is this
        rank's; round-robin keeps the shares even when hard items cluster, and needs no length in advance."""
        return index % self.world_size == self.rank

    def all_gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (any picklable object), in rank order; ``[value]`` in one process."""
        if not self.distributed:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def sum(self, value: float) -> float:
        """``value`` summed over the ranks (in double precision)."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self._collective_device())
        dist.all_reduce(t)
        return t.item()

    def _collective_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def resolve_device(name: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA if available, else CPU; ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as given (CUDA without a
    GPU is an error that says what to do)."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but no CUDA GPU is available; use auto or cpu")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}")
    return device


def device_name(name: str) -> str:
    """:func:`resolve_device` as a string, for an ``argparse`` ``type=`` (``--device auto|cpu|cuda|cuda:N``)."""
    return str(resolve_device(name))


def launched() -> bool:
    """True if this process was started by torchrun (``WORLD_SIZE`` set)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def start(device: str = "auto") -> Context:
    """Join the torchrun process group (once) and return this process's :class:`Context`.

    ``device``: ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``; under torchrun a CUDA process takes
    ``cuda:LOCAL_RANK``. Torch's threads (and numba's, for the fused kernels) are set to the node's cores divided
    by its processes, so N processes never oversubscribe the node. Outside torchrun: one process on ``device``.
    """
    base = resolve_device(device)
    if not launched():
        return Context(device=base)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if base.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local_rank} has no GPU: this node has {torch.cuda.device_count()}; "
                               f"start at most that many processes per node")
        base = torch.device("cuda", local_rank)
        torch.cuda.set_device(base)
    _share_cores(local_world)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if base.type == "cuda" else "gloo", rank=rank, world_size=world)
    return Context(rank, world, local_rank, base)


def _share_cores(processes: int) -> None:
    """Give this process its share of the node's cores, for torch and for the numba kernels: ``OMP_NUM_THREADS``
    if set (torchrun sets 1), else the cores divided by the node's processes."""
    from spikeshield.neurons import lif_kernels

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or max(1, cores // max(processes, 1))
    torch.set_num_threads(threads)
    lif_kernels.set_threads(threads)

