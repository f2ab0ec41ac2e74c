"""Run an exported TVM library in the Relax VM of a separate, fresh Python process.

One worker per library stays up for the life of this process (TVM's import takes
seconds), so a verification pass over many batches pays for it once. No torch.

``prestart`` (the target's warm-up, while the build captures) starts one worker
without a library: it imports TVM on a core the build leaves idle then, and the
first library to run is sent to it instead of starting a process. A build's
``--jobs`` workers all inherit that process; a one-byte token in a pipe gives it to
the first that asks (reading one byte from a pipe is atomic across processes), and
the others start their own.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from qconvert_tvm import worker
from qconvert_tvm.worker import pack, read_message, unpack, write_message

__all__ = ["TvmWorker", "close_all", "prestart", "run_tvm"]

_MAX_WORKERS = 2


class TvmWorker:
    """A ``python .../qconvert_tvm/worker.py LIB`` child process and its pipes."""

    def __init__(self, library: Path | None) -> None:
        """``library`` None: started ahead, ``attach`` sends it later."""
        self.library = library
        self.owner = os.getpid()  # a forked process that uses this worker cannot wait for it (not its child)
        # The child's stderr, quoted when it dies; open for the child's life, closed in close().
        self.log = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            # The worker file runs as a script, so the child imports neither qconvert nor this
            # package; -P keeps this package's directory off sys.path (its module names are generic).
            [sys.executable, "-P", str(Path(worker.__file__)), *([str(library)] if library is not None else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
        )

    def attach(self, library: Path) -> None:
        """Send the library to a worker started without one."""
        assert self.proc.stdin is not None and self.library is None
        self.library = library
        write_message(self.proc.stdin, str(library).encode())

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            write_message(self.proc.stdin, pack(inputs))
            reply = read_message(self.proc.stdout)
        except BrokenPipeError:
            reply = None
        if reply is None:
            code = self.proc.wait()
            self.log.seek(0)
            tail = [ln for ln in self.log.read().decode(errors="replace").splitlines() if ln.strip()][-1:]
            raise RuntimeError(f"the TVM worker for {self.library} exited with code {code}: {' '.join(tail)}")
        if not reply:
            reason = read_message(self.proc.stdout) or b"unknown error"
            raise RuntimeError(f"the Relax VM failed on {self.library}: {reason.decode(errors='replace')}")
        return unpack(reply)

    @property
    def alive(self) -> bool:
        if os.getpid() != self.owner:  # inherited through fork: a dead one shows when it stops answering
            return True
        return self.proc.poll() is None

    def close(self) -> None:
        self.log.close()
        if self.alive:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_workers: OrderedDict[tuple[str, float], TvmWorker] = OrderedDict()


class _Spare:
    """A worker started ahead, without a library, and the token that gives it to one process only."""

    def __init__(self) -> None:
        read, write = os.pipe()
        os.write(write, b"1")
        os.close(write)
        self.token = read
        self.worker = TvmWorker(None)

    def claim(self) -> TvmWorker | None:
        """The worker, to the first process that asks (here or in any process forked since); else None."""
        try:
            won = os.read(self.token, 1) == b"1"
        except OSError:  # closed by close_all
            return None
        return self.worker if won else None


_spare: _Spare | None = None


def prestart() -> None:
    """Start a worker ahead of the first run, unless one started ahead is still unclaimed here."""
    global _spare
    if _spare is None or _spare.worker.library is not None:
        _spare = _Spare()


def _worker(library: Path) -> TvmWorker:
    key = (str(library.resolve()), library.stat().st_mtime)
    if key in _workers and not _workers[key].alive:
        _workers.pop(key).close()
    if key in _workers:
        _workers.move_to_end(key)
        return _workers[key]
    while len(_workers) >= _MAX_WORKERS:
        _workers.popitem(last=False)[1].close()
    ahead = _spare.claim() if _spare is not None else None
    if ahead is not None and ahead.alive:
        ahead.attach(library)
        _workers[key] = ahead
    else:
        _workers[key] = TvmWorker(library)
    return _workers[key]


def close_all() -> None:
    global _spare
    while _workers:
        _workers.popitem()[1].close()
    if _spare is not None:
        spare, _spare = _spare, None
        os.close(spare.token)
        spare.worker.close()


atexit.register(close_all)


def run_tvm(library: Path, inputs: list[np.ndarray], static_batch: int | None = None) -> list[np.ndarray]:
    """The library's outputs for ``inputs``; a library compiled for ``static_batch`` runs the batch in calls of
    that size (the last one padded by repeating its last sample, the padding's outputs dropped)."""
    worker = _worker(library)
    n = len(inputs[0]) if inputs and inputs[0].ndim else 0
    if static_batch is None or n == static_batch:
        return worker.run(inputs)
    parts: list[list[np.ndarray]] = []
    for start in range(0, n, static_batch):
        chunk = [a[start:start + static_batch] for a in inputs]
        real = len(chunk[0])
        if real < static_batch:
            chunk = [np.concatenate([c, np.repeat(c[-1:], static_batch - real, axis=0)]) for c in chunk]
        parts.append([o[:real] if o.ndim and len(o) == static_batch else o for o in worker.run(chunk)])
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]
