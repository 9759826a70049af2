"""One process per GPU under `torchrun` (DDP); the same command on CPU uses the gloo backend; a plain
`python` start is a single process. Ranks and world size come from torchrun's environment."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Runtime:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def start() -> Runtime:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Runtime(rank, world_size, local_rank, device)


def stop(rt: Runtime) -> None:
    if rt.distributed and dist.is_initialized():
        dist.destroy_process_group()


def mean_across_ranks(value: float, rt: Runtime) -> float:
    if not rt.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=rt.device)
    dist.all_reduce(t)
    return float(t) / rt.world_size


def any_rank(flag: bool, rt: Runtime) -> bool:
    """True on every rank when it is true on one (ranks must take the same branch)."""
    if not rt.distributed:
        return flag
    t = torch.tensor([float(flag)], device=rt.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def assert_ranks_in_sync(module: torch.nn.Module, rt: Runtime) -> float:
    """A checksum of the parameters, checked equal on every rank (DDP must keep replicas identical)."""
    checksum = float(sum(p.detach().double().sum() * (i + 1) for i, p in enumerate(module.parameters())))
    if rt.distributed:
        gathered = [None] * rt.world_size
        dist.all_gather_object(gathered, checksum)
        if len(set(gathered)) != 1:
            raise RuntimeError(f"parameters differ across ranks: checksums {gathered}")
    return checksum
