"""A build's targets emitted, verified and timed side by side (``--jobs``): which start first, what comes back.

Each target's work after quantization (``pipeline._finish_target``) runs as a ``qconvert.parallel`` task. With
several workers the targets start slowest first (``Target.build_cost``), so the long ones do not come last; the
report keeps the order the targets were asked in. A worker returns a ``TargetDone``: the report entry and the
seconds of that target's own phases, measured on the worker's clock. Where this process must not fork
(``fork_blocker``), the targets run one after the other here and the build says why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from qconvert.parallel import Task, fork_blocker, run_tasks
from qconvert.targets.base import Target
from qconvert.verify.report_schema import TargetEntry

__all__ = ["TargetDone", "TargetsRun", "run_targets"]


@dataclass(frozen=True)
class TargetDone:
    """One target's report entry (without ``layers``) and the seconds of its phases (``emit``, ``latency``, ...)."""

    entry: TargetEntry
    seconds: Mapping[str, float]


@dataclass(frozen=True)
class TargetsRun:
    """What each target's task returned, by name, and how many worker processes ran them (1: this process)."""

    done: Mapping[str, TargetDone]
    jobs: int


def run_targets(targets: Sequence[Target], tasks: Sequence[Task[TargetDone]], jobs: int,
                progress: Callable[[str], None]) -> TargetsRun:
    """Run ``tasks`` (one per target, same order) in ``jobs`` worker processes, or here one after the other for 1."""
    jobs = min(jobs, len(tasks))
    blocker = fork_blocker() if jobs > 1 else None
    if blocker is not None:
        progress(f"targets one after the other, not in {jobs} worker processes: {blocker}")
        jobs = 1
    if jobs <= 1:
        out: dict[str, TargetDone] = {}
        for task in tasks:
            progress(f"{task.name}: emit, verify")
            out.update(run_tasks([task], 1))
        return TargetsRun(out, 1)
    cost = {t.name: t.build_cost for t in targets}
    ordered = sorted(tasks, key=lambda t: -cost.get(t.name, 1.0))  # stable: equal costs keep the order asked
    progress(f"{', '.join(t.name for t in ordered)}: emit, verify in {jobs} worker processes")
    return TargetsRun(run_tasks(ordered, jobs), jobs)
