"""The collector set up for a qconvert command (fewer young collections) and frozen while a build forks workers."""

from __future__ import annotations

import gc

from qconvert.gc_tuning import YOUNG_THRESHOLD, frozen_for_fork, tune_for_command
from qconvert.parallel import Task, run_tasks


def test_the_command_waits_longer_between_young_collections_and_keeps_the_ratios() -> None:
    before = gc.get_threshold()
    try:
        tune_for_command()
        assert gc.get_threshold() == (YOUNG_THRESHOLD, before[1], before[2])
    finally:
        gc.set_threshold(*before)


def test_workers_inherit_a_frozen_heap_and_the_build_is_unfrozen_after() -> None:
    with frozen_for_fork():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
    tasks = [Task(str(i), gc.get_freeze_count) for i in range(2)]
    frozen = run_tasks(tasks, 2)  # forked: each worker counts what it inherited frozen
    assert all(n > 1000 for n in frozen.values()), frozen
    assert gc.get_freeze_count() == 0  # this process collects as before
