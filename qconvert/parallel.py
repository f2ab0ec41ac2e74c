"""Run a build's independent per-target work side by side, in worker processes started by ``fork``.

After capture, calibration and the float references (done once, in the build's process), each
target's emit, verification and latency depend on nothing another target does. ``run_tasks`` runs
such tasks in ``jobs`` worker processes forked once: a worker inherits everything the build holds
(the quantized models, the references, the data, the tasks themselves) without pickling a graph,
is sent the index of its next task through a pipe, sends the picklable result back, and takes the
next one when it is free, one task at a time (what a worker imported and warmed up for one target,
an exporter, a compiler, serves the next). ``jobs == 1`` runs the tasks here, one after the other.

Fork-safety: GNU libgomp (torch's OpenMP) hangs in a forked child that starts a parallel region
once the parent has run one, so a worker sets torch to one intra-op thread before anything else
(``WORKER_TORCH_THREADS``). The runtimes (onnxruntime, LiteRT, TVM, TensorRT) keep their own
thread pools and are first imported inside the workers. A worker's exception comes back and is
raised here (a qconvert error keeps its type, message and exit code; one that does not pickle
becomes a ``RuntimeError`` naming its type); Ctrl-C in the worker comes back as
``KeyboardInterrupt``. On any error or Ctrl-C here every other worker is killed and waited for
before the exception leaves ``run_tasks``, so the caller's cleanup (the build's temporary OUT)
runs after no worker can write any more.
"""

from __future__ import annotations

import glob
import multiprocessing
import os
import pickle
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Generic, TypeVar

from qconvert.errors import BadInputError, QConvertError
from qconvert.gc_tuning import frozen_for_fork
from qconvert.warm_up import wait_all

__all__ = ["WORKER_TORCH_THREADS", "Task", "WorkerDiedError", "auto_jobs", "fork_blocker", "mark_fresh_process", "parse_jobs",
           "ran_targets_here", "run_tasks"]

R = TypeVar("R")
#: torch intra-op threads in a worker (see the module docstring: more than one can hang after fork).
WORKER_TORCH_THREADS = 1
_FRESH = False
_RAN_HERE = False
#: Memory a worker is assumed to need at least, beyond what it shares with the build (a runtime's libraries).
_WORKER_FLOOR_BYTES = 1 << 30


class WorkerDiedError(QConvertError):
    """A worker process ended without sending its result (killed, out of memory, a crash in native code)."""


@dataclass(frozen=True)
class Task(Generic[R]):
    """One unit of work: ``name`` (a target) and the function computing its picklable result (run in a worker)."""

    name: str
    run: Callable[[], R]


def parse_jobs(value: str | int | None) -> int | None:
    """``--jobs``: a positive number, or ``auto``/None (``auto_jobs``)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    try:
        n = int(value)
    except ValueError:
        raise BadInputError(f"--jobs {value!r}: give a number of worker processes (1 = one target after the other) or 'auto'") from None
    if n < 1:
        raise BadInputError(f"--jobs {n}: give at least 1 (1 = one target after the other) or 'auto'")
    return n


def auto_jobs(tasks: int) -> int:
    """As many workers as there are tasks, CPU cores others leave idle, and workers that fit in available memory.

    Idle cores: the cores this process may use less the 1-minute load average, the build's own process not counted
    (on a machine already busy a second worker only competes with the first: both are slower, the build is not
    faster), nor the threads of background jobs running now at a positive nice value (``_runnable``): the
    scheduler gives a worker at nice 0 nearly all of a core against them (on this machine, with five or six such jobs
    and a load of 7, the serial digits build ran 3 % slower than on an idle machine, and two workers took 15-16 s where
    one took 23-25 s). The load average trails by a minute: a core counts as busy only while some other thread at
    nice 0 runs or waits to run now. A worker shares the build's memory until it writes to it; it is counted at the build's
    resident size (at least 1 GiB) against the memory available now. 1 where ``fork`` does not exist, and in a process the ``qconvert``
    command did not start (the Python API, a test session: it may hold runtimes' threads, see ``fork_blocker``;
    pass ``jobs`` to fork there).
    """
    if not _FRESH or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    now = _runnable()
    busy = max(0.0, _load() - 1.0) if now is None else min(max(0.0, _load() - 1.0 - now.niced), now.others)
    idle = cpus - busy
    cpus = min(cpus, max(1, round(idle)))
    available = _available_bytes()
    fit = available // max(_resident_bytes(), _WORKER_FLOOR_BYTES) if available else cpus
    return max(1, min(tasks, cpus, fit))


def mark_fresh_process() -> None:
    """Called by the ``qconvert`` command when it starts: this process will have run no target before its build forks."""
    global _FRESH
    _FRESH = True


def fork_blocker() -> str | None:
    """Why this process must not fork workers now, or None.

    A forked worker has only the thread that forked. A thread pool some runtime started here (an
    onnxruntime session's, TVM's, TensorFlow's) is missing in it, and the first time the worker frees or
    uses an object of that runtime it inherited (a cached session) it can wait forever for those threads.
    The build never runs a runtime in its own process before it forks (they are first loaded in the
    workers), but a process that already ran targets (the Python API called again, a test session) may
    hold such objects: then the targets run one after the other.
    """
    if _RAN_HERE:
        return "targets already ran in this process, whose runtimes' threads a forked worker would not have"
    return None


def ran_targets_here() -> None:
    """Record that target hooks ran in this process (``fork_blocker`` then refuses to fork)."""
    global _RAN_HERE
    _RAN_HERE = True


def run_tasks(tasks: Sequence[Task[R]], jobs: int) -> dict[str, R]:
    """Each task's result by name: ``jobs`` workers take the tasks in the order given, each the next one when it is
    free; ``jobs == 1`` runs them here."""
    if jobs <= 1 or len(tasks) <= 1:
        ran_targets_here()
        return {t.name: t.run() for t in tasks}
    wait_all()  # no fork while a warm-up thread runs (qconvert.warm_up)
    ctx = multiprocessing.get_context("fork")
    pending = list(range(len(tasks)))
    workers: dict[Connection, BaseProcess] = {}
    busy: dict[Connection, str] = {}
    results: dict[str, R] = {}
    try:
        with frozen_for_fork():  # a worker's collections skip what it inherited (qconvert.gc_tuning)
            for _ in range(min(jobs, len(tasks))):
                mine, theirs = ctx.Pipe()
                started: BaseProcess = ctx.Process(target=_worker, args=(theirs, tasks), name="qconvert-worker")
                started.start()
                theirs.close()
                workers[mine] = started
                i = pending.pop(0)
                mine.send(i)
                busy[mine] = tasks[i].name
        while busy:
            for ready in wait(list(busy)):
                assert isinstance(ready, Connection)
                name = busy.pop(ready)
                results[name] = _receive(ready, name, workers[ready])
                if pending:
                    i = pending.pop(0)
                    ready.send(i)
                    busy[ready] = tasks[i].name
                else:
                    ready.send(None)  # done: the worker ends
        for proc in workers.values():
            proc.join()
    finally:
        for conn, proc in workers.items():  # after an error or Ctrl-C: no worker may write any more
            if proc.is_alive():
                proc.kill()
            proc.join()
            conn.close()
    return results


def _receive(conn: Connection, name: str, proc: BaseProcess) -> Any:
    try:
        status, value = conn.recv()
    except (EOFError, OSError):
        proc.join()
        raise WorkerDiedError(f"target '{name}': its worker process ended without a result (exit code {proc.exitcode}"
                              f"{': killed, perhaps for memory' if proc.exitcode == -9 else ''}); run with --jobs 1 to see "
                              "the error in the build's own process") from None
    if status == "err":
        raise value
    return value


def _worker(conn: Connection, tasks: Sequence[Task[R]]) -> None:
    """In a forked worker: one intra-op thread; run each task index received, send back ``("ok", result)`` or
    ``("err", exception)``, until ``None``."""
    import torch

    torch.set_num_threads(WORKER_TORCH_THREADS)
    while True:
        try:
            i = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if i is None:
            return
        try:
            message: tuple[str, object] = ("ok", tasks[i].run())
        except BaseException as e:  # noqa: BLE001  (every exception, Ctrl-C included, goes back to the build)
            message = ("err", _portable(e, tasks[i].name))
        try:
            conn.send(message)
        except Exception as e:  # noqa: BLE001  (a result that does not pickle: a bug, reported as one)
            conn.send(("err", RuntimeError(f"target '{tasks[i].name}': its result could not be sent back: {type(e).__name__}: {e}")))


def _portable(e: BaseException, name: str) -> BaseException:
    """``e`` itself when it survives pickling (with the worker's traceback as a note), else a ``RuntimeError`` naming it."""
    if isinstance(e, KeyboardInterrupt):
        return KeyboardInterrupt()
    tb = "".join(traceback.format_exception(e))
    try:
        e.add_note(f"(raised in the worker process of target '{name}'; its traceback:)\n{tb}")
        back = pickle.loads(pickle.dumps(e))
        if type(back) is type(e) and str(back) == str(e):
            return back
    except Exception:  # noqa: BLE001, S110  (an exception that does not pickle: sent as text below)
        pass
    msg = str(e).strip().splitlines()
    err = RuntimeError(f"{type(e).__name__}: {msg[0] if msg else ''}")
    err.add_note(f"(raised in the worker process of target '{name}'; its traceback:)\n{tb}")
    return err


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


@dataclass(frozen=True)
class Runnable:
    """Threads of other processes running or ready to run now (``/proc/*/task/*/stat``): at a positive nice value, and
    the others. This process and the processes it started (a warm-up's probe) are not counted."""

    niced: int
    others: int


def _runnable() -> Runnable | None:
    """None without ``/proc`` (not Linux): then the load average alone decides."""
    if not os.path.isdir(f"/proc/{os.getpid()}/task"):
        return None
    me = os.getpid()
    niced = others = 0
    for stat in glob.glob("/proc/[0-9]*/task/[0-9]*/stat"):
        try:
            with open(stat, encoding="ascii", errors="replace") as f:
                text = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        pid = int(stat.split("/")[2])
        fields = text[text.rfind(")") + 2:].split()  # after "pid (comm) ": state, ppid, ..., priority, nice
        if len(fields) <= 16 or fields[0] != "R" or pid == me or fields[1] == str(me):
            continue
        if fields[16].lstrip("-").isdigit() and int(fields[16]) > 0:
            niced += 1
        else:
            others += 1
    return Runnable(niced, others)


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
