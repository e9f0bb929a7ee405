"""Data-parallel training across processes started by ``torchrun``.

``torchrun --nproc-per-node N -m semicrf run ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; :func:`start` joins them into one process group (NCCL
on CUDA, one GPU per process; gloo on CPU). A plain ``semicrf run`` is the group of one,
:data:`SINGLE`, and never touches ``torch.distributed``.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

#: How long a process waits for the others in a collective (rank 0 alone runs the
#: validation and test passes between training epochs, and may take a while on CPU).
TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class Group:
    """This process's place in the data-parallel group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes every output (checkpoints, metrics, predictions, plots)."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every process reaches this point (no-op for one process)."""
        if self.world_size > 1:
            dist.barrier()

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum of ``values`` over the processes (float64)."""
        if self.world_size == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()


SINGLE = Group()


def start(device: torch.device) -> tuple[Group, torch.device]:
    """Join the torchrun group (if ``WORLD_SIZE`` > 1) and return it with this process's
    device: ``cuda:LOCAL_RANK`` on CUDA. Without torchrun: :data:`SINGLE` and ``device``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE, device
    group = Group(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        if group.local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {group.local_rank} but only {torch.cuda.device_count()} "
                             "CUDA devices: use --nproc-per-node <= the GPUs per node")
        device = torch.device("cuda", group.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    return group, device


def stop(group: Group) -> None:
    """Leave the process group started by :func:`start` (after a final barrier)."""
    if group.world_size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
