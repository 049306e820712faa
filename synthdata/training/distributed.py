"""Distributed plumbing for the training loop: process group setup, gradient averaging, and the data sharding.

Launch the loop with torchrun; RANK / WORLD_SIZE / LOCAL_RANK come from the environment. With one process these
are no-ops (world 1, no process group), so the loop has one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    rank: int
    world: int
    device: torch.device
    owns_group: bool  # we called init_process_group, so we tear it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> DistInfo:
    dev = torch.device(device)
    if dist.is_available() and dist.is_initialized():  # the caller set up the process group
        rank, world, owns = dist.get_rank(), dist.get_world_size(), False
    else:
        rank, world, owns = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), False
    if dev.type == "cuda":
        if "LOCAL_RANK" in os.environ:
            dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        elif dev.index is None:  # set_device() refuses a bare "cuda"
            dev = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
        owns = True
    return DistInfo(rank, world, dev, owns)


def average_gradients(params: list[nn.Parameter], world: int) -> None:
    """All-reduce every gradient as one flat buffer (one collective per backward instead of one per tensor).

    Done by hand rather than with DistributedDataParallel because a GAN step has two backward passes over two
    different sub-networks with parameters frozen in between, which DDP's autograd hooks handle poorly.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


class ShardedSampler:
    """Minibatches of indices: a fresh permutation of the whole set each epoch, rank r taking every world-th index.

    Like torch's DistributedSampler, each epoch's permutation comes from a generator seeded with (seed, epoch), so
    every rank agrees on it without communicating and the sampler's entire state is (epoch, position).
    Each rank gets N // world indices per epoch (the remainder is dropped so ranks stay in lockstep); a batch never
    straddles two epochs.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int, world: int, device: torch.device) -> None:
        if n < world:
            raise ValueError(f"{n} images cannot be sharded over {world} ranks")
        self.n, self.seed, self.rank, self.world, self.device = n, seed, rank, world, device
        self.per_rank = n // world
        self.batch = min(max(1, batch_size // world), self.per_rank)
        self.epoch, self.pos = 0, 0
        self._shard: torch.Tensor | None = None

    def _make_shard(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)
        return perm[self.rank : self.per_rank * self.world : self.world].to(self.device)

    def next(self) -> torch.Tensor:
        if self.pos + self.batch > self.per_rank:
            self.epoch, self.pos, self._shard = self.epoch + 1, 0, None
        if self._shard is None:
            self._shard = self._make_shard()
        idx = self._shard[self.pos : self.pos + self.batch]
        self.pos += self.batch
        return idx

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.pos, self._shard = int(state["epoch"]), int(state["pos"]), None
