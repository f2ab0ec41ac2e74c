"""The float model's outputs over the evaluation data, computed once per build.

Verification of every target, the float accuracy, ``auto_fallback`` and the targets'
extra checks all compare against the same float outputs; one pass computes them and
keeps them per batch, each as the flat tuple of the model's outputs (torch's pytree
order), so nothing runs the float model again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from qconvert.core.binding import call_model
from qconvert.core.outputs import flatten
from qconvert.io.data import Batch, Dataset
from qconvert.verify.metrics import AccuracyAccumulator

__all__ = ["FloatReferences", "flat_outputs"]


def flat_outputs(out: object) -> tuple[np.ndarray, ...]:
    """The model's output structure (tensor, tuple, dict, dataclass, ModelOutput) as a flat tuple of arrays."""
    return tuple(t.detach().numpy() for t in flatten(out))


@dataclass(frozen=True)
class FloatReferences:
    """Float outputs per evaluation batch of ``batch_size``, and the float accuracy on output 0."""

    batch_size: int
    outputs: tuple[tuple[np.ndarray, ...], ...]
    accuracy: float | None

    @classmethod
    @torch.no_grad()
    def compute(cls, model: torch.nn.Module, data: Dataset, batch_size: int) -> FloatReferences:
        outputs = []
        acc = AccuracyAccumulator()
        labelled = data.labels is not None
        for b in data.batches(batch_size):
            flat = flat_outputs(call_model(model, data.input_names, [torch.from_numpy(np.array(a)) for a in b.inputs]))
            outputs.append(flat)
            if labelled and b.labels is not None:
                acc.update(flat[0], b.labels)
        return cls(batch_size, tuple(outputs), acc.result() if labelled else None)

    def with_batches(self, data: Dataset) -> Iterator[tuple[Batch, tuple[np.ndarray, ...]]]:
        """The evaluation batches again, each with its float outputs."""
        return zip(data.batches(self.batch_size), self.outputs, strict=True)
