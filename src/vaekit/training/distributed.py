"""Data-parallel training over the processes `torchrun` starts (one per GPU, or several on a CPU).

torchrun tells each process who it is through the environment (RANK, WORLD_SIZE, LOCAL_RANK and
the rendezvous address); without those variables everything here is a no-op and vaekit runs as
one process. Each global batch drawn from the shared permutation is cut into one contiguous
slice per rank, so every image of an epoch is used exactly once; gradients are averaged by
DistributedDataParallel; only rank 0 touches the run folder.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from vaekit.devices import resolve_device
from vaekit.errors import ReportedByRankZero, VaekitError

T = TypeVar("T")
Batch = TypeVar("Batch", torch.Tensor, np.ndarray)


@dataclass(frozen=True)
class Cluster:
    """Where this process sits among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # the rank within this machine: picks the GPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


SINGLE = Cluster()


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise VaekitError(f"${name}={text!r} is not an integer: launch with torchrun, which sets it") from None


def cluster_from_env(environ: Mapping[str, str] = os.environ) -> Cluster:
    """The cluster torchrun describes in the environment; a single process when it describes none."""
    world_size = _env_int(environ, "WORLD_SIZE", 1)
    rank = _env_int(environ, "RANK", 0)
    local_rank = _env_int(environ, "LOCAL_RANK", rank)
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise VaekitError(
            f"RANK={rank}, LOCAL_RANK={local_rank} and WORLD_SIZE={world_size} do not fit together: "
            "launch with torchrun, which sets them"
        )
    return Cluster(rank, world_size, local_rank)


def start(cluster: Cluster, device_name: str) -> torch.device:
    """Join the process group (nccl on CUDA, gloo on CPU) and pick this rank's device."""
    device = resolve_device(device_name)
    if not cluster.active:
        return device
    if device.type == "cuda":
        if cluster.local_rank >= torch.cuda.device_count():
            raise VaekitError(
                f"LOCAL_RANK {cluster.local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                "start at most that many processes per node (--nproc-per-node)"
            )
        device = torch.device("cuda", cluster.local_rank)  # one GPU per process, whatever --device said
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        if device.type == "cuda":
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return device


def stop(together: bool = False) -> None:
    """Leave the process group: free what still refers to it (see fit) and destroy it. `together`
    (after success only: a rank that failed alone would wait forever) first waits for every rank."""
    if dist.is_initialized():
        gc.collect()
        if together:
            dist.barrier()
        dist.destroy_process_group()


def shard_rows(count: int, cluster: Cluster) -> slice:
    """This rank's contiguous rows of `count`; the ranks' rows cover them exactly once."""
    return slice(count * cluster.rank // cluster.world_size, count * (cluster.rank + 1) // cluster.world_size)


def shard(batch: Batch, cluster: Cluster) -> Batch:
    """This rank's share of `batch` (see shard_rows)."""
    return batch[shard_rows(len(batch), cluster)]


def gather_rows(local: torch.Tensor, count: int, cluster: Cluster) -> torch.Tensor:
    """Every rank's rows (shard_rows of a batch of `count`) stacked in order: (b, ...) -> (count, ...).

    Differentiable: the gradient of each gathered row flows back to the rank that computed it, so
    an objective of the whole global batch (β-TCVAE's q(z), DIP's covariance, an MMD) trains on N
    processes as on one. Shares differ by at most one row: they are padded to the largest first.
    """
    if not cluster.active:
        return local
    from torch.distributed.nn.functional import all_gather  # the autograd-aware collective

    sizes = [shard_rows(count, Cluster(rank, cluster.world_size)) for rank in range(cluster.world_size)]
    longest = max(s.stop - s.start for s in sizes)
    padding = longest - local.shape[0]
    padded = torch.cat([local, local.new_zeros((padding, *local.shape[1:]))]) if padding else local
    staged = padded.cuda() if dist.get_backend() == "nccl" and not padded.is_cuda else padded
    pieces = all_gather(staged)
    return torch.cat([piece[: s.stop - s.start].to(local.device) for piece, s in zip(pieces, sizes, strict=True)])


def _reduce(tensor: torch.Tensor, op: dist.ReduceOp.RedOpType) -> torch.Tensor:
    if not dist.is_initialized():
        return tensor
    # nccl reduces CUDA tensors only: CPU values make a round trip through this rank's GPU.
    staged = tensor.cuda() if dist.get_backend() == "nccl" and not tensor.is_cuda else tensor
    dist.all_reduce(staged, op=op)
    return staged.to(tensor.device)


def all_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (the tensor itself for one process)."""
    return _reduce(tensor, dist.ReduceOp.SUM)


def all_max(tensor: torch.Tensor) -> torch.Tensor:
    """Maximum over ranks: any rank's flag becomes everyone's."""
    return _reduce(tensor, dist.ReduceOp.MAX)


def from_main(produce: Callable[[], T], cluster: Cluster) -> T:
    """Run `produce` on rank 0 only and hand its result, or its VaekitError, to every rank.

    For work only rank 0 may do (claiming the run folder, reading a snapshot it alone may see):
    when it fails, every rank stops with the same message instead of waiting forever.
    """
    if not cluster.active:
        return produce()
    outcome: list[Any] = [None, None]
    if cluster.is_main:
        try:
            outcome = [produce(), None]
        except VaekitError as exc:
            outcome = [None, str(exc)]
    dist.broadcast_object_list(outcome, src=0)
    if outcome[1] is not None:
        raise VaekitError(outcome[1]) if cluster.is_main else ReportedByRankZero(outcome[1])
    return outcome[0]
