"""A build's targets emitted, verified and timed side by side (``--jobs``): which start first, what comes back.

Each target's work after quantization (``pipeline._finish_target``) runs as a ``qconvert.parallel`` task. With
several workers the targets start slowest first (``Target.build_cost``), so the long ones do not come last; the
report keeps the order the targets were asked in. A worker returns a ``TargetDone``: the report entry and the
seconds of that target's own phases, measured on the worker's clock. The per-layer report of every target (one
float graph pass for all, ``layers_task``) is one more task, taken last by the first worker free, so it no longer
waits for every target to finish before it starts in the build's own process. Where this process must not fork
(``fork_blocker``), the tasks run one after the other here and the build says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from qconvert.core.quantize import QuantizedModel
from qconvert.core.stats import StatsSet
from qconvert.io.data import Dataset
from qconvert.parallel import Task, fork_blocker, run_tasks
from qconvert.targets.base import Target
from qconvert.verify.report_schema import Layers, TargetEntry

__all__ = ["LAYERS_TASK", "LayersDone", "TargetDone", "TargetsRun", "layers_task", "run_targets"]

#: The layer report's task name (not a target name: those are identifiers).
LAYERS_TASK = "(layer report)"


@dataclass(frozen=True)
class TargetDone:
    """One target's report entry (without ``layers``) and the seconds of its phases (``emit``, ``latency``, ...)."""

    entry: TargetEntry
    seconds: Mapping[str, float]


@dataclass(frozen=True)
class LayersDone:
    """Every target's ``layers`` (``verify.layerwise.layer_reports``), by target name, and the seconds it took."""

    layers: Mapping[str, Layers]
    seconds: float


@dataclass(frozen=True)
class TargetsRun:
    """What each target's task returned, by name, the layer report, and how many worker processes ran them (1: this
    process)."""

    done: Mapping[str, TargetDone]
    layers: LayersDone
    jobs: int


def layers_task(qmodels: Mapping[str, QuantizedModel], stats: StatsSet, data: Dataset, batch_size: int) -> Task[LayersDone]:
    """The per-layer report of every target's Q/DQ model as a task (one float graph pass for all)."""
    def run() -> LayersDone:
        from qconvert.verify.layerwise import layer_reports

        start = time.perf_counter()
        layers = layer_reports(qmodels, stats, data, batch_size)
        return LayersDone(layers, time.perf_counter() - start)
    return Task(LAYERS_TASK, run)


def run_targets(targets: Sequence[Target], tasks: Sequence[Task[TargetDone]], layers: Task[LayersDone], jobs: int,
                progress: Callable[[str], None]) -> TargetsRun:
    """Run ``tasks`` (one per target, same order), then ``layers``, in ``jobs`` worker processes, or here one after the
    other for 1."""
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
        return TargetsRun(out, run_tasks([layers], 1)[LAYERS_TASK], 1)
    cost = {t.name: t.build_cost for t in targets}
    ordered = sorted(tasks, key=lambda t: -cost.get(t.name, 1.0))  # stable: equal costs keep the order asked
    progress(f"{', '.join(t.name for t in ordered)}: emit, verify in {jobs} worker processes")
    every: list[Task[TargetDone | LayersDone]] = [Task(t.name, t.run) for t in ordered]
    every.append(Task(LAYERS_TASK, layers.run))  # the layer report last: the first worker free takes it
    done = run_tasks(every, jobs)
    found = done.pop(LAYERS_TASK)
    assert isinstance(found, LayersDone)
    return TargetsRun({name: d for name, d in done.items() if isinstance(d, TargetDone)}, found, jobs)
