"""Every model output compared: artifact in its runtime vs the simulation and vs float.

A detection or segmentation head, an encoder's hidden states, a second head: each
output is its own tensor with its own quantization step, so each gets its own
comparison. numpy only (the build feeds it arrays), like ``metrics``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qconvert.verify.metrics import AccuracyAccumulator, CompareAccumulator, Comparison
from qconvert.verify.report_schema import Comparison as ComparisonEntry
from qconvert.verify.report_schema import OutputEntry

__all__ = ["OutputParity", "OutputResult", "OutputsParity"]


@dataclass(frozen=True)
class OutputResult:
    """One output of one artifact over the evaluation data."""

    name: str
    #: Scale of the output's final dequantize; None for a float output.
    output_scale: float | None
    #: The step ``vs_simulation.max_lsb_error`` is counted in.
    parity_step: float | None
    vs_simulation: Comparison
    vs_float: Comparison

    def entry(self) -> OutputEntry:
        """As report.json's ``outputs`` holds it."""
        return OutputEntry(name=self.name, output_scale=self.output_scale, parity_step=self.parity_step,
                           vs_simulation=ComparisonEntry.of(self.vs_simulation), vs_float=ComparisonEntry.of(self.vs_float))


@dataclass(frozen=True)
class OutputParity:
    """All outputs of one artifact; accuracy is measured on the first (primary) output."""

    outputs: tuple[OutputResult, ...]
    accuracy: float | None
    simulation_accuracy: float | None

    @property
    def primary(self) -> OutputResult:
        return self.outputs[0]

    @property
    def worst_parity(self) -> OutputResult:
        """The output farthest from the simulation in its own steps: what the parity gate judges first."""
        return max(self.outputs, key=lambda o: -1.0 if o.vs_simulation.max_lsb_error is None else o.vs_simulation.max_lsb_error)


class OutputsParity:
    """Streams batches of (float, simulation, artifact) outputs; memory does not grow with the data."""

    def __init__(self, names: Sequence[str], steps: Sequence[float | None], scales: Sequence[float | None]) -> None:
        self.names, self.steps, self.scales = tuple(names), tuple(steps), tuple(scales)
        self._vs_sim = [CompareAccumulator(lsb=s) for s in self.steps]
        self._vs_float = [CompareAccumulator() for _ in self.names]
        self._acc, self._sim_acc = AccuracyAccumulator(), AccuracyAccumulator()

    def update(self, ref: Sequence[np.ndarray], sim: Sequence[np.ndarray], out: Sequence[np.ndarray], labels: np.ndarray | None) -> None:
        """One batch; every sequence holds one array per output, in the model's output order.

        Raises:
            ValueError: the artifact returned a different number of outputs than the model.
        """
        if not (len(ref) == len(sim) == len(out) == len(self.names)):
            raise ValueError(f"output counts differ: model {len(ref)}, simulation {len(sim)}, artifact {len(out)} "
                             f"(expected {len(self.names)}: {', '.join(self.names)})")
        for i in range(len(self.names)):
            self._vs_sim[i].update(sim[i], out[i])
            self._vs_float[i].update(ref[i], out[i])
        if labels is not None:
            self._acc.update(out[0], labels)
            self._sim_acc.update(sim[0], labels)

    def result(self) -> OutputParity:
        outs = tuple(OutputResult(n, sc, st, vs.result(), vf.result())
                     for n, sc, st, vs, vf in zip(self.names, self.scales, self.steps, self._vs_sim, self._vs_float))
        return OutputParity(outs, self._acc.result(), self._sim_acc.result())
