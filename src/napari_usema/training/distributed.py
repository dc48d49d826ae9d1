"""torchrun support: one process per GPU (nccl) or per CPU worker (gloo), set up from the environment.

Code runs unchanged with or without torchrun: without it, the world has one rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_world(device_name: str = "auto") -> World:
    """Join the torchrun process group if the environment names one (``WORLD_SIZE`` > 1)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    return World(rank, size, local_rank)


def rank_device(world: World, device_name: str) -> torch.device:
    """This rank's device: its own GPU under torchrun, else the named or auto-selected device."""
    from ..inference.devices import select_device

    device = select_device(device_name)
    if device.type == "cuda" and world.distributed:
        return torch.device("cuda", world.local_rank)
    return device


def shard(items: list, world: World) -> list:
    """This rank's share of ``items``: every ``size``-th item from ``rank`` on (no item twice)."""
    return items[world.rank :: world.size]


def agree_on_max(value: float, world: World) -> float:
    """The largest ``value`` over all ranks (the value itself without torchrun)."""
    if not world.distributed:
        return value
    device = torch.device("cuda", world.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
