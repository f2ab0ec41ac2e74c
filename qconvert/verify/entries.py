"""Typed report entries from the build's own objects: what a target's section of report.json is made of.

The pipeline builds one ``TargetEntry`` per target from these; nothing here assembles a dict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qconvert.verify.report_schema import (
    Comparison,
    DeviceEntry,
    FastTypesEntry,
    GridChangeEntry,
    ImportedGridEntry,
    OptimizeForEntry,
    OutputEntry,
    RequantizedLayer,
)

if TYPE_CHECKING:
    from qconvert.core.requantize import FoldedRequantization
    from qconvert.imports.grid import GridChange
    from qconvert.imports.types import ImportedQuant
    from qconvert.targets.base import DeviceFigures
    from qconvert.targets.speed import SpeedChoice
    from qconvert.verify.effective import EffectiveSchemes
    from qconvert.verify.output_parity import OutputParity

__all__ = ["RunFigures", "device_entry", "imported_grid_entry", "optimize_for_entry", "requantization_entries"]


def optimize_for_entry(choice: SpeedChoice, effective: EffectiveSchemes) -> OptimizeForEntry:
    """What the target optimised for, its fast types, and the schemes the quantized tensors actually got."""
    fast = choice.fast
    return OptimizeForEntry(
        optimize_for=choice.optimize_for, source=choice.source, device=fast.device if fast else None,
        fast_types=None if fast is None else FastTypesEntry(activations=fast.activation_mode, weights=fast.weight_mode,
                                                            weight_granularity=fast.weight_granularity, why=fast.why),
        activations=effective.activations, weights=effective.weights, placement=choice.placement.name,
    )


def imported_grid_entry(imported: ImportedQuant, changes: Sequence[GridChange]) -> ImportedGridEntry:
    return ImportedGridEntry(tool=imported.tool, tensors=len(imported.tensors),
                             changed=[GridChangeEntry.model_validate(c, from_attributes=True) for c in changes], notes=list(imported.notes))


def device_entry(d: DeviceFigures) -> DeviceEntry:
    return DeviceEntry(label=d.label, accuracy=d.accuracy, sqnr_db=d.sqnr_db, top1_agreement=d.top1_agreement)


def requantization_entries(folded: Sequence[FoldedRequantization]) -> list[RequantizedLayer] | None:
    return [RequantizedLayer.model_validate(f, from_attributes=True) for f in folded] or None


@dataclass(frozen=True)
class RunFigures:
    """The figures of an artifact run in its runtime over the evaluation data, as a target entry holds them.

    ``vs_simulation`` is the output farthest from the simulation in its own steps (what the parity gate
    judges first); ``vs_float`` and the accuracies are the first (primary) output's; ``outputs`` has each one.
    """

    accuracy: float | None
    simulation_accuracy: float | None
    output_scale: float | None
    parity_step: float | None
    vs_simulation: Comparison
    vs_float: Comparison
    outputs: list[OutputEntry]

    @classmethod
    def of(cls, r: OutputParity) -> RunFigures:
        return cls(r.accuracy, r.simulation_accuracy, r.primary.output_scale, r.worst_parity.parity_step,
                   Comparison.of(r.worst_parity.vs_simulation), Comparison.of(r.primary.vs_float), [o.entry() for o in r.outputs])
