"""Targets' first steps that mostly wait on other processes, started while the build captures and calibrates.

Capture, calibration and quantization run in the build's own process on one core, before any target's work
starts (and before ``--jobs`` forks its workers). Some targets begin with a step that mostly waits on another
process: inductor (the pytorch target) probes which vector instruction sets the compiler and CPU support by
compiling and loading a library in a fresh Python process per set (about 0.9 s in every process that compiles, a
build's worker included); the tvm target verifies in a fresh Python process that first imports TVM (about 0.6 s).
``start`` calls each target's ``Target.warm_up`` here (it does its imports in this thread), then runs what each
returns in a background thread of its own. While those threads wait on their processes the build's own thread
keeps the interpreter, so the processes use a core that would otherwise idle, and a worker forked afterwards
inherits their result (a filled cache, a started process).

``WarmUp.wait`` joins the threads; the build calls it before any target emits, and ``wait_all`` (called by
``qconvert.parallel`` before it forks) joins every thread ever started, so no fork happens while one runs. A
warm-up that raises leaves nothing cached: the target's own hook does the same work again and meets the error
where it handles it. The error goes to the build's log (``OUT/build.log``), not to the terminal.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qconvert.targets.base import Target

__all__ = ["WarmUp", "start", "wait_all"]

_log = logging.getLogger("qconvert.warm_up")
_STARTED: list[threading.Thread] = []


class WarmUp:
    """The background threads running the targets' warm-up steps, one per step (none: nothing to wait for)."""

    def __init__(self, steps: Sequence[tuple[str, Callable[[], object]]]) -> None:
        self._threads = [threading.Thread(target=_run, args=(name, step), name=f"qconvert-warm-up-{name}", daemon=True)
                         for name, step in steps]
        for thread in self._threads:
            _STARTED.append(thread)
            thread.start()

    def wait(self) -> None:
        """Return once every step has ended."""
        for thread in self._threads:
            thread.join()


def start(targets: Sequence[Target]) -> WarmUp:
    """Call each target's ``warm_up`` here and run the steps they return in background threads."""
    steps = [(t.name, step) for t in targets if (step := t.warm_up()) is not None]
    return WarmUp(steps)


def wait_all() -> None:
    """Join every warm-up thread this process started (before a fork: a forked child has no threads)."""
    while _STARTED:
        _STARTED.pop().join()


def _run(name: str, step: Callable[[], object]) -> None:
    try:
        step()
    except Exception:  # noqa: BLE001  (the target's hook does the work again and meets the error there)
        _log.warning("target '%s': its warm-up failed; its hooks do that work themselves", name, exc_info=True)
