"""Targets' first steps that mostly wait on other processes, started while the build captures and calibrates.

Capture, calibration and quantization run in the build's own process on one core, before any target's work
starts (and before ``--jobs`` forks its workers). Some targets begin with a step that mostly waits: inductor (the
pytorch target) probes which vector instruction sets the compiler and CPU support by compiling and loading a
library in a fresh Python process per set, about 0.9 s on every process that compiles, a build's worker
included. ``start`` calls each target's ``Target.warm_up`` here (it does its imports in this thread), then runs
what they return one after the other in one background thread. While that thread waits on its processes the
build's own thread keeps the interpreter, so the probes use a core that would otherwise idle, and a worker forked
afterwards inherits their result.

``WarmUp.wait`` joins the thread; the build calls it before any target emits, and ``wait_all`` (called by
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
    """The background thread running the targets' warm-up steps (none: nothing to wait for)."""

    def __init__(self, steps: Sequence[tuple[str, Callable[[], object]]]) -> None:
        self._thread: threading.Thread | None = None
        if steps:
            self._thread = threading.Thread(target=_run, args=(tuple(steps),), name="qconvert-warm-up", daemon=True)
            _STARTED.append(self._thread)
            self._thread.start()

    def wait(self) -> None:
        """Return once every step has ended."""
        if self._thread is not None:
            self._thread.join()


def start(targets: Sequence[Target]) -> WarmUp:
    """Call each target's ``warm_up`` here and run the steps they return in a background thread."""
    steps = [(t.name, step) for t in targets if (step := t.warm_up()) is not None]
    return WarmUp(steps)


def wait_all() -> None:
    """Join every warm-up thread this process started (before a fork: a forked child has no threads)."""
    while _STARTED:
        _STARTED.pop().join()


def _run(steps: tuple[tuple[str, Callable[[], object]], ...]) -> None:
    for name, step in steps:
        try:
            step()
        except Exception:  # noqa: BLE001  (the target's hook does the work again and meets the error there)
            _log.warning("target '%s': its warm-up failed; its hooks do that work themselves", name, exc_info=True)
