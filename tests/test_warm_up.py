"""Targets' warm-up steps (``Target.warm_up``) run in a background thread the build waits for before any target works."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from qconvert import warm_up
from qconvert.targets.base import Availability, Target


class _Sleepy(Target):
    """A target whose warm-up waits (as on a probe process) and records the thread it ran in."""

    name = "sleepy"
    api_version = 1

    def __init__(self, step: Callable[[], object] | None) -> None:
        self.step = step

    def available(self) -> Availability:
        return Availability(True)

    def warm_up(self) -> Callable[[], object] | None:
        return self.step

    def emit(self, *args: object) -> object:  # type: ignore[override]  # never called here
        raise NotImplementedError

    def run(self, *args: object) -> object:  # type: ignore[override]  # never called here
        raise NotImplementedError


def test_steps_run_in_background_threads_and_wait_returns_after_them() -> None:
    ran: list[tuple[str, str]] = []

    def step(label: str) -> Callable[[], object]:
        def run() -> None:
            time.sleep(0.2)
            ran.append((label, threading.current_thread().name))
        return run

    started = time.perf_counter()
    w = warm_up.start([_Sleepy(step("a")), _Sleepy(None), _Sleepy(step("b"))])
    assert time.perf_counter() - started < 0.1  # start does not wait for the steps
    w.wait()
    assert time.perf_counter() - started < 0.38  # side by side: one step does not wait for another
    assert sorted(ran) == [("a", "qconvert-warm-up-sleepy"), ("b", "qconvert-warm-up-sleepy")]


def test_no_step_no_thread() -> None:
    before = threading.active_count()
    warm_up.start([_Sleepy(None)]).wait()
    assert threading.active_count() == before


def test_a_failing_step_goes_to_the_log_and_the_next_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("probe process crashed")

    with caplog.at_level(logging.WARNING, logger="qconvert.warm_up"):
        warm_up.start([_Sleepy(broken), _Sleepy(lambda: ran.append("after"))]).wait()
    assert ran == ["after"]
    assert "target 'sleepy': its warm-up failed" in caplog.text and "probe process crashed" in caplog.text


def test_wait_all_joins_every_thread_before_a_fork() -> None:
    done = threading.Event()

    def slow() -> None:
        time.sleep(0.3)
        done.set()

    warm_up.start([_Sleepy(slow)])  # not waited for by its build (one that failed before its targets ran)
    warm_up.wait_all()
    assert done.is_set()
