"""Sub-batches sized to a memory budget, for the passes that hold every layer's tensor of a batch at once.

The per-layer report keeps each probed activation of the float graph and of every target's Q/DQ graph
for one batch; per-layer parity keeps every quantized tensor the runtime exposed. At the recipe's
batch size that is batch x the whole network's activations: on EfficientNet-Lite (224x224, batch 64)
several GB per graph, which is how a whole build reached 17.5 GB and was killed. The first sub-batch
is one sample; its recorded bytes fix how many samples the later ones take, so memory stays near the
budget whatever the network or the batch size, and the figures are the same (the passes are per sample).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["RECORD_BUDGET_BYTES", "ChunkSizer"]

#: Bytes one sub-batch may record (activations of every probed layer, all graphs together).
RECORD_BUDGET_BYTES = 512 * 2**20


class ChunkSizer:
    """Cuts batches into sub-batches: one sample first, then as many as ``budget`` bytes of records hold."""

    def __init__(self, budget: int = RECORD_BUDGET_BYTES) -> None:
        self.budget = budget
        self.per_sample: int | None = None

    def chunks(self, inputs: Sequence[np.ndarray]) -> Iterator[tuple[np.ndarray, ...]]:
        n, start = len(inputs[0]), 0
        while start < n:
            size = 1 if self.per_sample is None else max(1, self.budget // self.per_sample)
            yield tuple(a[start:start + size] for a in inputs)
            start += size

    def observed(self, nbytes: int, samples: int) -> None:
        """What one sub-batch of ``samples`` recorded; the first one sizes the rest."""
        if self.per_sample is None and samples > 0:
            self.per_sample = max(1, nbytes // samples)
