"""Python's cyclic garbage collector set up for a ``qconvert`` command's process and its ``--jobs`` workers.

A build imports torch, torchao, onnxscript, LiteRT, JAX and TVM: 600,000-800,000 objects the collector tracks.
With Python's default thresholds (a young collection every 700 allocations, an older one every 10 of those) it
ran about 1,100 collections before a digits build forked its workers and about 700 per target in each worker, the
full ones walking every one of those objects: measured with ``gc.callbacks``, 0.9 s of the build's own process
before it forked and 3.2-3.6 s across its two workers, a sixth of the CPU the build used. Nothing there is garbage:
it is the libraries' code and tables.

- ``tune_for_command`` (called first by the ``qconvert`` console script, before anything large is imported) makes a
  young collection wait for ``YOUNG_THRESHOLD`` allocations instead of 700, keeping the ratios between the
  generations. Measured on the same build: 0.3 s before the fork, 0.7 s in the workers. A cycle of garbage (a
  dropped graph module and the tensors it holds) still goes at the next collection of its generation: later
  counted in allocations, never kept for good.
- ``frozen_for_fork`` moves everything the build's process holds into the collector's permanent generation while
  it forks its workers (``gc.freeze``): a worker's full collections then walk only what it allocated itself, and
  they no longer write to every inherited object's header, which copied those pages into each worker. The build's
  process unfreezes once its workers are started.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["YOUNG_THRESHOLD", "frozen_for_fork", "tune_for_command"]

#: Allocations between two young collections in a ``qconvert`` command's process (Python's default: 700).
YOUNG_THRESHOLD = 20_000


def tune_for_command() -> None:
    """Set the young-generation threshold for this process (the ``qconvert`` command owns it until it exits)."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


@contextmanager
def frozen_for_fork() -> Iterator[None]:
    """Everything tracked now is left out of collections while the block forks workers; unfrozen after it."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
