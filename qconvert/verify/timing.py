"""Latency of an int8 artifact against its float model, measured so that the ratio survives a noisy machine.

Two things distort a naive A-then-B timing on a shared 2-core machine: load that
changes between the two halves, and the worker threads of one runtime session
(onnxruntime, OpenMP) still spinning while the other session starts, which made
float ResNet-18 in onnxruntime look 3x slower at batch 1 than it is. So the
callables run in turn, a block of calls each per round, and the median over all
calls is kept: the first calls of a block, slowed by the previous block's
spinning threads, fall outside the median.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

__all__ = ["interleaved_median_ms"]


def interleaved_median_ms(calls: Mapping[str, Callable[[], object]], budget_s: float = 3.0, rounds: int = 5,
                          max_block: int = 20) -> dict[str, float]:
    """Median milliseconds of one call of each callable.

    Each callable is warmed up twice; then ``rounds`` rounds run a block of calls
    of each in turn. The block size is picked from the warm-up time so the whole
    measurement takes about ``budget_s`` (at least 3 calls per block).
    """
    warm: dict[str, float] = {}
    for name, fn in calls.items():
        fn()
        start = time.perf_counter()
        fn()
        warm[name] = time.perf_counter() - start
    per_round = max(sum(warm.values()), 1e-6)
    block = int(min(max_block, max(3, budget_s / rounds / per_round)))
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            for _ in range(block):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: 1000.0 * statistics.median(ts) for name, ts in times.items()}
