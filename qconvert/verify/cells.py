"""Table cells that the terminal/markdown table and report.html both show, from typed report entries."""

from __future__ import annotations

from qconvert.verify.numbers import cell
from qconvert.verify.report_schema import TargetEntry

__all__ = ["by_batch", "int8_nodes_cell", "speedup_cell"]


def by_batch(t: TargetEntry) -> list[tuple[int, float, float, float | None]]:
    """(batch, int8 ms, float ms, speed-up) per measured batch size, smallest batch first."""
    if t.latency is None:
        return []
    rows = [(int(b), v.int8_ms, v.float_ms, v.speedup) for b, v in t.latency.by_batch.items()]
    return sorted(rows)


def speedup_cell(t: TargetEntry) -> str:
    """'1.80x at b1, 3.40x at b16': float ms over int8 ms per measured batch size, in the artifact's own runtime."""
    cells = [f"{cell(s)}x at b{b}" for b, _, _, s in by_batch(t) if s]
    return ", ".join(cells) or "-"


def int8_nodes_cell(t: TargetEntry) -> str:
    """'30 of 30': compute nodes the runtime ran in int8, of all compute nodes (where it can tell)."""
    lat = t.latency
    if lat is None or lat.int8_nodes is None:
        return "-"
    return f"{lat.int8_nodes} of {lat.int8_nodes + (lat.float_nodes or 0)}"
