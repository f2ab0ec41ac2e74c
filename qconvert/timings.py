"""Where a build's time goes: wall seconds per phase, and per target per phase.

The build records into one ``Timings`` and writes ``timings`` into report.json, so a
slow build says which step to look at. Phases of the same name add up (a phase run
once per batch, or again by ``auto_fallback``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from qconvert.verify.report_schema import TimingsEntry

__all__ = ["BUILD_PHASES", "TARGET_PHASES", "Timings"]

#: Phases of the whole build, in the order they run.
BUILD_PHASES = ("capture", "calibration", "float_reference", "fallback_search", "layer_report", "total")
#: Phases of one target, in the order they run.
TARGET_PHASES = ("quantize", "emit", "runtime_run", "simulation", "layer_parity", "golden", "latency", "extra_checks", "accumulators")


@dataclass
class Timings:
    """Seconds per phase; ``targets`` holds each target's own phases."""

    phases: dict[str, float] = field(default_factory=dict)
    targets: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Worker processes the targets ran in (``qconvert.targets_pool``); 1: the build's own process.
    jobs: int = 1

    def add(self, phase: str, seconds: float, target: str | None = None) -> None:
        table = self.phases if target is None else self.targets.setdefault(target, {})
        table[phase] = table.get(phase, 0.0) + seconds

    @contextmanager
    def phase(self, name: str, target: str | None = None) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start, target)

    def entry(self) -> TimingsEntry:
        """As report.json's ``timings`` holds it (seconds, rounded to 0.1 ms)."""
        return TimingsEntry(phases={k: round(v, 4) for k, v in self.phases.items()},
                            targets={t: {k: round(v, 4) for k, v in p.items()} for t, p in self.targets.items()}, jobs=self.jobs)
