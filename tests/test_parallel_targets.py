"""Targets emitted and verified side by side in forked worker processes (``--jobs``): the same report as one after
the other, errors and Ctrl-C from a worker handled as in the build's own process, no worker left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from qconvert.errors import DataError, GateFailedError
from qconvert.parallel import Task, WorkerDiedError, auto_jobs, parse_jobs, run_tasks
from qconvert.testing import digits_build_args


def _figures(out: Path) -> dict[str, Any]:
    """report.json without what differs from run to run (seconds)."""
    report = json.loads((out / "report.json").read_text())
    del report["timings"]
    return report


def _qconvert(args: list[str], *, patch: str = "") -> subprocess.CompletedProcess[str]:
    """A real ``qconvert`` process (a test session's own process may hold runtimes' threads: it would not fork)."""
    code = f"{patch}\nfrom qconvert.cli import run\nrun()\n"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)


def test_two_targets_in_workers_report_what_one_after_the_other_does(digits: dict[str, Path], tmp_path: Path) -> None:
    runs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        r = _qconvert([*digits_build_args(digits, out, "tensorrt", "onnx"), "--no-latency", "--jobs", jobs])
        assert r.returncode == 0, r.stderr
        runs[jobs] = _figures(out)
        timings = json.loads((out / "report.json").read_text())["timings"]
        assert timings["jobs"] == int(jobs)
        assert {"emit", "runtime_run", "quantize"} <= set(timings["targets"]["onnx"]) and "emit" in timings["targets"]["tensorrt"]
        assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["onnx", "stats", "tensorrt"]
    assert list(runs["2"]["targets"]) == ["tensorrt", "onnx"]  # the order asked for, whichever worker finished first
    assert runs["1"] == runs["2"]


def test_tasks_run_in_other_processes_and_come_back_by_name() -> None:
    tasks: list[Task[tuple[int, int]]] = [Task(str(i), lambda i=i: (i * i, os.getpid())) for i in range(5)]  # type: ignore[misc]
    results = run_tasks(tasks, 2)
    assert {k: v[0] for k, v in results.items()} == {str(i): i * i for i in range(5)}
    pids = {v[1] for v in results.values()}
    assert os.getpid() not in pids and len(pids) <= 2  # two workers, each taking the next task when free
    assert run_tasks(tasks[:2], 1) == {"0": (0, os.getpid()), "1": (1, os.getpid())}  # jobs 1: here


def _fails() -> None:
    raise DataError("eval.npz: wrong shape")


def test_a_workers_error_keeps_its_type_message_and_exit_code() -> None:
    with pytest.raises(DataError) as e:
        run_tasks([Task[object]("a", lambda: 1), Task[object]("b", _fails)], 2)
    assert str(e.value) == "eval.npz: wrong shape" and e.value.exit_code == 2  # what the CLI prints: one line, exit 2
    assert any("worker process of target 'b'" in n for n in getattr(e.value, "__notes__", []))
    with pytest.raises(GateFailedError) as g:
        run_tasks([Task("a", lambda: 1), Task("b", lambda: (_ for _ in ()).throw(GateFailedError(["x below 0.9", "y"])))], 2)
    assert g.value.failures == ["x below 0.9", "y"]


class _Unpicklable(Exception):
    def __init__(self, a: int, b: int) -> None:  # pickling calls it with one argument: it does not come back
        super().__init__(f"{a}-{b}")


def _unpicklable() -> None:
    raise _Unpicklable(1, 2)


def test_an_error_that_does_not_pickle_comes_back_as_text() -> None:
    with pytest.raises(RuntimeError) as e:
        run_tasks([Task[object]("a", lambda: 1), Task[object]("b", _unpicklable)], 2)
    assert str(e.value) == "_Unpicklable: 1-2"


def test_a_worker_that_dies_is_an_error_naming_its_target() -> None:
    with pytest.raises(WorkerDiedError, match="target 'b': its worker process ended without a result"):
        run_tasks([Task[object]("a", lambda: 1), Task[object]("b", lambda: os._exit(9))], 2)


def test_ctrl_c_in_a_worker_stops_the_others(tmp_path: Path) -> None:
    pidfile = tmp_path / "sleeper"

    def sleep() -> None:
        pidfile.write_text(str(os.getpid()))
        time.sleep(600)

    def interrupted() -> None:
        while not pidfile.exists():
            time.sleep(0.01)
        raise KeyboardInterrupt

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_tasks([Task("sleeper", sleep), Task("ctrl-c", interrupted)], 2)
    assert time.monotonic() - start < 60
    with pytest.raises(ProcessLookupError):  # killed and reaped before run_tasks returned
        os.kill(int(pidfile.read_text()), 0)


def test_ctrl_c_while_a_target_emits_in_a_worker_exits_130_and_leaves_nothing(digits: dict[str, Path], tmp_path: Path) -> None:
    patch = ("import os, signal, time\nfrom qconvert_tensorrt import TensorRTTarget\n"
             "def emit(*a, **k):\n    os.kill(os.getpid(), signal.SIGINT)\n    time.sleep(30)\n"  # a real SIGINT, in the worker
             "TensorRTTarget.emit = emit")
    out = tmp_path / "work" / "OUT"
    r = _qconvert([*digits_build_args(digits, out, "onnx", "tensorrt"), "--no-latency", "--jobs", "2"], patch=patch)
    assert r.returncode == 130, r.stderr
    assert r.stderr.strip() == "interrupted" and "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "work").exists()


def test_a_target_error_in_a_worker_is_one_line_and_its_exit_code(digits: dict[str, Path], tmp_path: Path) -> None:
    patch = ("from qconvert.errors import ConstraintError\nfrom qconvert_tensorrt import TensorRTTarget\n"
             "def emit(*a, **k):\n    raise ConstraintError(\"target 'tensorrt': cannot represent layer fc\")\n"
             "TensorRTTarget.emit = emit")
    out = tmp_path / "work" / "OUT"
    r = _qconvert([*digits_build_args(digits, out, "onnx", "tensorrt"), "--no-latency", "--jobs", "2"], patch=patch)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == "error: target 'tensorrt': cannot represent layer fc" and r.stdout == ""
    assert not (tmp_path / "work").exists()


def test_jobs_option() -> None:
    assert parse_jobs("auto") is None and parse_jobs(None) is None and parse_jobs("3") == 3
    for bad in ("0", "-1", "many"):
        with pytest.raises(DataError.__mro__[1], match="--jobs"):  # BadInputError: one line, exit 2
            parse_jobs(bad)
    assert auto_jobs(6) == 1  # a test session's process is not one the qconvert command started (see fork_blocker)


def test_auto_jobs_uses_the_cores_others_leave_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    from qconvert import parallel

    monkeypatch.setattr(parallel, "_FRESH", True)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1})
    monkeypatch.setattr(parallel, "_available_bytes", lambda: 64 << 30)
    monkeypatch.setattr(parallel, "_resident_bytes", lambda: 1 << 30)
    monkeypatch.setattr(parallel, "_runnable", lambda: parallel.Runnable(niced=0, others=4))
    for load, jobs in ((0.4, 2), (1.2, 2), (2.0, 1), (3.8, 1)):  # 1.0 of the load is the build's own process
        monkeypatch.setattr(parallel, "_load", lambda load=load: load)
        assert auto_jobs(6) == jobs, load
    monkeypatch.setattr(parallel, "_load", lambda: 6.6)  # six background jobs at nice 19 leave the cores to the build
    monkeypatch.setattr(parallel, "_runnable", lambda: parallel.Runnable(niced=6, others=4))
    assert auto_jobs(6) == 2
    monkeypatch.setattr(parallel, "_runnable", lambda: parallel.Runnable(niced=1, others=4))
    assert auto_jobs(6) == 1
    monkeypatch.setattr(parallel, "_runnable", lambda: parallel.Runnable(niced=1, others=0))  # the load is a minute old
    assert auto_jobs(6) == 2
    monkeypatch.setattr(parallel, "_runnable", lambda: None)  # no /proc: the load alone
    assert auto_jobs(6) == 1
    assert auto_jobs(1) == 1
    monkeypatch.setattr(parallel, "_load", lambda: 0.0)
    monkeypatch.setattr(parallel, "_runnable", lambda: parallel.Runnable(niced=0, others=0))
    monkeypatch.setattr(parallel, "_available_bytes", lambda: 1 << 30)  # memory for one worker only
    assert auto_jobs(6) == 1


def test_runnable_counts_busy_threads_of_other_processes_by_nice() -> None:
    from qconvert import parallel

    spin = "import os, sys, time\nos.nice(int(sys.argv[1]))\nend = time.time() + 20\nwhile time.time() < end:\n    pass\n"
    starter = "import subprocess, sys, time\np = subprocess.Popen(sys.argv[1:])\ntime.sleep(30)\n"
    # grandchildren (started by another process than this one): the build counts its own children as its own. The
    # second keeps this process's nice value (a test run at nice 19 has no thread at nice 0 to start).
    busy = [subprocess.Popen([sys.executable, "-c", starter, sys.executable, "-c", spin, n], start_new_session=True)
            for n in ("19", "0")]
    want = parallel.Runnable(niced=1, others=1) if os.nice(0) == 0 else parallel.Runnable(niced=2, others=0)
    try:
        deadline, seen = time.time() + 10, parallel.Runnable(0, 0)
        while not (seen.niced >= want.niced and seen.others >= want.others) and time.time() < deadline:
            now = parallel._runnable()  # counted whenever it runs or waits to run
            assert now is not None
            seen = parallel.Runnable(max(seen.niced, now.niced), max(seen.others, now.others))
            time.sleep(0.02)
        assert seen.niced >= want.niced and seen.others >= want.others, seen
    finally:
        for p in busy:
            os.killpg(p.pid, signal.SIGKILL)  # the starter and the thread spinning under it
            p.wait()
