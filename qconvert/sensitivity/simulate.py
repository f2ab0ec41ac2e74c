"""Score a quantized model's simulation against the float model on a fixed set of batches.

The float outputs are computed once and kept, so scoring a recipe variant costs one
quantization (no data pass) and one forward pass of its Q/DQ graph.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from qconvert.core.binding import call_model
from qconvert.core.outputs import flatten
from qconvert.io.data import Dataset
from qconvert.verify.gates import Measured
from qconvert.verify.metrics import AccuracyAccumulator, CompareAccumulator
from qconvert.verify.references import FloatReferences
from qconvert.verify.report_schema import SimulatedScore

__all__ = ["Evaluator", "SimScore"]


@dataclass(frozen=True)
class SimScore:
    """How close one simulated variant is to float: accuracy (%, None without labels), SQNR, top-1 agreement."""

    accuracy: float | None
    sqnr_db: float
    top1_agreement: float | None

    def measured(self) -> Measured:
        """As a gate measurement (the simulation has no runtime parity to judge)."""
        return Measured(self.accuracy, self.sqnr_db, self.top1_agreement)

    def entry(self) -> SimulatedScore:
        """As report.json and 'qconvert sensitivity --json' hold it."""
        return SimulatedScore(accuracy=self.accuracy, sqnr_db=self.sqnr_db, top1_agreement=self.top1_agreement)


@dataclass(frozen=True)
class _Batch:
    inputs: tuple[torch.Tensor, ...]
    reference: np.ndarray
    labels: np.ndarray | None


class Evaluator:
    """Float reference outputs for up to ``limit`` samples of ``data``, computed once."""

    def __init__(self, model: torch.nn.Module, data: Dataset, batch_size: int, limit: int | None = None,
                 references: FloatReferences | None = None) -> None:
        """``references``: the build's float outputs over ``data`` (used when they cover the same batches)."""
        self.batches: list[_Batch] = []
        reuse = references is not None and limit is None and references.batch_size == batch_size
        with torch.no_grad():
            for i, b in enumerate(data.batches(batch_size, limit)):
                inputs = tuple(torch.from_numpy(np.array(a)) for a in b.inputs)
                if reuse and references is not None:
                    ref = references.outputs[i][0]
                else:
                    ref = flatten(call_model(model, data.input_names, inputs))[0].numpy()
                self.batches.append(_Batch(inputs, ref, b.labels))
        self.samples = sum(len(b.reference) for b in self.batches)
        self.labelled = all(b.labels is not None for b in self.batches)
        self.float_accuracy = self._accuracy(b.reference for b in self.batches)

    @torch.no_grad()
    def score(self, graph: torch.nn.Module) -> SimScore:
        """Accuracy, SQNR and agreement of ``graph`` (a Q/DQ simulation) against float."""
        return self.score_outputs([flatten(graph(*b.inputs))[0].numpy() for b in self.batches])

    def score_outputs(self, outputs: list[np.ndarray]) -> SimScore:
        """The score of a variant's first output on each batch (``qconvert.sensitivity.onward`` computes them)."""
        compare = CompareAccumulator()
        for b, out in zip(self.batches, outputs, strict=True):
            compare.update(b.reference, out)
        c = compare.result()
        return SimScore(self._accuracy(outputs), c.sqnr_db, c.top1_agreement)

    def _accuracy(self, outputs: Iterable[np.ndarray]) -> float | None:
        if not self.labelled:
            return None
        acc = AccuracyAccumulator()
        for out, b in zip(outputs, self.batches):
            assert b.labels is not None
            acc.update(out, b.labels)
        return acc.result()
