"""A source model as importers hand it over: the reference, its tapped float twin, the grids."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from qconvert.core.plan import Role
from qconvert.imports.tap import Tap, TapSite
from qconvert.imports.types import Grid, ImportedQuant, ImportedTensor, Tool

__all__ = ["QuantizerRecord", "SourceModel", "TapBook", "resolve"]


@dataclass(frozen=True)
class QuantizerRecord:
    """One quantizer of the source model: where it lives there, what it quantizes, its grid."""

    index: int
    source: str
    role: Role
    grid: Grid


@dataclass(frozen=True)
class SourceModel:
    """What an importer made of a model.

    ``reference`` is the user's model in eval mode with its fake quantization on (observers
    and range updates off): parity is measured against its forward. ``tapped`` is the float
    twin the build captures, a ``Tap`` where each quantizer was.
    """

    tool: Tool
    reference: nn.Module
    tapped: nn.Module
    quantizers: tuple[QuantizerRecord, ...]
    notes: tuple[str, ...] = field(default=())
    #: ``tapped`` is already a captured graph (PT2E) with tap nodes, not a module to capture.
    graph_ready: bool = False


class TapBook:
    """Hands out one ``Tap`` per quantizer and keeps its record."""

    def __init__(self, tool: Tool) -> None:
        self.tool = tool
        self._records: list[QuantizerRecord] = []
        self.notes: list[str] = []

    def tap(self, grid: Grid | None, source: str, role: Role) -> Tap | None:
        """A tap for an enabled quantizer; None (no tap) for a missing or disabled one."""
        if grid is None:
            return None
        rec = QuantizerRecord(len(self._records), source, role, grid)
        self._records.append(rec)
        return Tap(rec.index)

    def records(self) -> tuple[QuantizerRecord, ...]:
        return tuple(self._records)


def resolve(source: SourceModel, sites: list[TapSite]) -> ImportedQuant:
    """Key every quantizer by the tensor its tap landed on in the captured graph.

    Two quantizers on one tensor (an output quantizer and the next layer's input quantizer):
    the later one in the graph wins, as it is the one the consumer reads; a note says so.
    """
    records = {r.index: r for r in source.quantizers}
    tensors: dict[str, ImportedTensor] = {}
    notes = list(source.notes)
    for site in sites:
        rec = records[site.index]
        if rec.role == "weight" and site.role != "weight":
            notes.append(f"{rec.source}: quantizes a weight that is not a parameter read by a conv or linear; not imported")
            continue
        if site.key in tensors and tensors[site.key].grid != rec.grid:
            notes.append(f"tensor '{site.key}': quantized twice in the source ({tensors[site.key].source}, {rec.source}); "
                         f"the grid of {rec.source} is used")
        tensors[site.key] = ImportedTensor(site.key, site.role, site.module, rec.grid, rec.source)  # type: ignore[arg-type]  # site.role: "weight" or "activation" by construction
    seen = {s.index for s in sites}
    notes += [f"{r.source}: its tensor is not in the captured graph; not imported" for r in source.quantizers if r.index not in seen]
    return ImportedQuant(source.tool, tuple(tensors.values()), tuple(notes))
