"""Calibration sharded across torch.distributed ranks (``torchrun ... -m qconvert``).

Each rank observes every world-th batch; statistics are merged on rank 0, which
alone writes results. Because histograms share a power-of-two grid and each batch
is sampled the same way whichever rank reads it, the merged statistics equal a
single-process run exactly, except the EMA, which is order-dependent by nature.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from qconvert.core.stats import StatsSet

__all__ = ["Shard", "current_shard", "gather_stats", "shard_batches"]

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current_shard() -> Shard:
    """The shard of this process; initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Shard()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return Shard(dist.get_rank(), dist.get_world_size())


def shard_batches(batches: Iterable[T], shard: Shard) -> Iterator[T]:
    for i, b in enumerate(batches):
        if i % shard.world == shard.rank:
            yield b


def gather_stats(stats: StatsSet, shard: Shard) -> StatsSet | None:
    """Merge every rank's statistics onto rank 0 (in rank order); other ranks get None."""
    if shard.world == 1:
        return stats
    parts: list[StatsSet] | None = [stats] * shard.world if shard.is_main else None
    dist.gather_object(stats, parts, dst=0)
    if not shard.is_main:
        return None
    assert parts is not None
    merged = parts[0]
    for p in parts[1:]:
        merged = merged.merged(p)
    return merged
