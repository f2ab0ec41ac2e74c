"""Latency of an int8 artifact against its float model, measured so that the ratio survives a noisy machine.

Three things distort a naive A-then-B timing on a shared 2-core machine: load that
changes between the two halves, load from other tenants that slows a random part of
the runs, and the worker threads of one runtime session (onnxruntime, OpenMP) still
spinning while the other session starts, which made float ResNet-18 in onnxruntime
look 3x slower at batch 1 than it is. So the callables run in turn, a block of calls
each per round, and the figure kept is a low quantile (the 10th percentile) of all
calls: runs slowed by someone else's load sit above it. On MobileNetV2 at batch 1 the
median of float onnxruntime moved between 5.5 and 8 ms from run to run here, its
10th percentile between 4.1 and 4.6 ms, and the int8/float ratio of three runs was
2.15, 2.12, 2.12 (medians: 2.20, 2.67, 2.21).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np

__all__ = ["QUANTILE", "interleaved_ms"]

QUANTILE = 0.1


def interleaved_ms(calls: Mapping[str, Callable[[], object]], budget_s: float = 3.0, rounds: int = 8,
                   max_block: int = 20, quantile: float = QUANTILE) -> dict[str, float]:
    """Milliseconds of one call of each callable: the ``quantile`` of all timed calls.

    Each callable is warmed up twice; then ``rounds`` rounds run a block of calls
    of each in turn, the order rotating from round to round. The block size is picked from the warm-up time so the whole
    measurement takes about ``budget_s`` (at least 2 calls per block).
    """
    warm: dict[str, float] = {}
    for name, fn in calls.items():
        fn()
        start = time.perf_counter()
        fn()
        warm[name] = time.perf_counter() - start
    per_round = max(sum(warm.values()), 1e-6)
    block = int(min(max_block, max(2, budget_s / rounds / per_round)))
    times: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls.items())
    for r in range(rounds):
        # each round starts with another callable, so none always runs right after the same neighbour
        for name, fn in order[r % len(order):] + order[: r % len(order)]:
            for _ in range(block):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: 1000.0 * float(np.quantile(ts, quantile)) for name, ts in times.items()}
