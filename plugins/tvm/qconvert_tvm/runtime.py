"""Run an exported TVM library in the Relax VM of a separate, fresh Python process.

One worker per library stays up for the life of this process (TVM's import takes
seconds), so a verification pass over many batches pays for it once. No torch.
"""

from __future__ import annotations

import atexit
import subprocess
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from qconvert_tvm import worker
from qconvert_tvm.worker import pack, read_message, unpack, write_message

__all__ = ["TvmWorker", "close_all", "run_tvm"]

_MAX_WORKERS = 2


class TvmWorker:
    """A ``python .../qconvert_tvm/worker.py LIB`` child process and its pipes."""

    def __init__(self, library: Path) -> None:
        self.library = library
        # The child's stderr, quoted when it dies; open for the child's life, closed in close().
        self.log = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            # The worker file runs as a script, so the child imports neither qconvert nor this
            # package; -P keeps this package's directory off sys.path (its module names are generic).
            [sys.executable, "-P", str(Path(worker.__file__)), str(library)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
        )

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


def _worker(library: Path) -> TvmWorker:
    key = (str(library.resolve()), library.stat().st_mtime)
    if key in _workers and not _workers[key].alive:
        _workers.pop(key).close()
    if key in _workers:
        _workers.move_to_end(key)
        return _workers[key]
    while len(_workers) >= _MAX_WORKERS:
        _workers.popitem(last=False)[1].close()
    _workers[key] = TvmWorker(library)
    return _workers[key]


def close_all() -> None:
    while _workers:
        _workers.popitem()[1].close()


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
