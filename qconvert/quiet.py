"""Keep third-party chatter off the user's terminal during a command; keep it in a log.

torch, torchao, onnxruntime, TensorFlow/LiteRT and TVM talk through three channels:
Python ``logging``, Python ``warnings``, and C/C++ code writing straight to the file
descriptors 1 and 2 (onnxruntime's and TVM's loggers, LiteRT's "Created TensorFlow Lite
delegate", c10's ``TORCH_WARN``). ``captured`` routes all three into one temporary log:

- the loggers in ``THIRD_PARTY_LOGGERS`` (and the root logger) get a handler on the log;
- ``warnings.showwarning`` writes to the log;
- the loggers already configured with their own handlers under those names (torch's
  ``torch.export``, set up when torch is imported) get the same handler instead of theirs;
- file descriptors 1 and 2 are pointed at the log, and ``sys.stdout``/``sys.stderr`` write
  to the log too: a handler a library creates inside the block (torch imported lazily binds
  ``StreamHandler(sys.stderr)``) lands there. qconvert's own progress goes to
  ``Capture.terminal``, a duplicate of the original stderr; a command prints its results
  after the block.

``save_log(directory)`` copies what was said into ``directory/build.log`` when anything
was (the build calls it just before OUT is moved into place, so the log ships with the
report). ``echo=True`` (``--verbose``) also copies every line to the terminal's stderr.
Everything is restored in ``finally``, also on Ctrl-C. One capture at a time per process;
a nested ``captured`` is a no-op that shares the outer one.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["LOG_FILE", "THIRD_PARTY_LOGGERS", "Capture", "captured", "save_log"]

LOG_FILE = "build.log"
#: Loggers of the libraries a build drives; each gets the capture's handler and stops propagating.
THIRD_PARTY_LOGGERS = (
    "torch", "torchao", "onnx", "onnxruntime", "onnxscript", "onnx_ir", "tensorflow", "absl", "tvm",
    "litert_torch", "ai_edge_torch", "ai_edge_litert", "tensorrt", "jax", "PIL", "numexpr",
)
_current: ContextVar[Capture | None] = ContextVar("qconvert_quiet_capture", default=None)


@dataclass
class Capture:
    """The temporary log of one capture; ``text()`` reads what was said so far.

    ``terminal`` is where qconvert's own progress goes inside the block: the user's stderr.
    """

    path: Path
    terminal: IO[str]

    def text(self) -> str:
        with suppress(OSError):
            return self.path.read_text(encoding="utf-8", errors="replace")
        return ""


def save_log(directory: Path) -> Path | None:
    """Write the active capture's log to ``directory/build.log`` if it holds anything; else nothing."""
    cap = _current.get()
    if cap is None:
        return None
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):
            stream.flush()
    text = cap.text()
    if not text.strip():
        return None
    out = directory / LOG_FILE
    out.write_text(text, encoding="utf-8")
    return out


class _Tee(io.TextIOBase):
    """A text stream writing to the log, and also to the terminal when echoing."""

    def __init__(self, log: IO[str], echo: IO[str] | None) -> None:
        self._log, self._echo = log, echo

    def write(self, s: str) -> int:
        if self._log.closed:  # a library kept this stream after the capture ended: drop, never raise
            return len(s)
        self._log.write(s)
        self._log.flush()
        if self._echo is not None and not self._echo.closed:
            self._echo.write(s)
            self._echo.flush()
        return len(s)

    def flush(self) -> None:
        if not self._log.closed:
            self._log.flush()

    def isatty(self) -> bool:
        return False


def _third_party_loggers() -> list[logging.Logger]:
    """The root logger, the listed libraries' loggers, and every existing logger below them."""
    names = {"", *THIRD_PARTY_LOGGERS}
    names |= {n for n in list(logging.root.manager.loggerDict) if n.split(".", 1)[0] in THIRD_PARTY_LOGGERS}
    return [logging.getLogger(n) for n in sorted(names)]


def _fd_of(stream: Any) -> int | None:
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


class _FdTee:
    """A pipe whose reading thread copies every byte written to it (by C code, onto fds 1 and 2) to
    the log and to the terminal: what ``--verbose`` shows of output that bypasses Python."""

    def __init__(self, log_fd: int, terminal_fd: int) -> None:
        self._read_fd, self.write_fd = os.pipe()
        self._log_fd, self._terminal_fd = log_fd, os.dup(terminal_fd)
        self._thread = threading.Thread(target=self._copy, name="qconvert-verbose-tee", daemon=True)

    def start(self) -> None:
        os.close(self.write_fd)  # fds 1 and 2 hold the writing end now; end of file once they are restored
        self._thread.start()

    def _copy(self) -> None:
        while chunk := os.read(self._read_fd, 65536):
            for fd in (self._log_fd, self._terminal_fd):
                with suppress(OSError):
                    os.write(fd, chunk)

    def finish(self) -> None:
        """After fds 1 and 2 are restored: wait for the last bytes (a child process still holding the
        pipe open does not hold the command up for more than a few seconds)."""
        if self._thread.ident is None:  # never started: the writing end is still ours
            os.close(self.write_fd)
        else:
            self._thread.join(timeout=5)
        if not self._thread.is_alive():
            os.close(self._read_fd)
        os.close(self._terminal_fd)


@contextmanager
def captured(echo: bool = False) -> Iterator[Capture]:
    """Capture third-party logging, warnings and C-level output inside the block (see the module doc)."""
    outer = _current.get()
    if outer is not None:
        yield outer
        return
    fd, name = tempfile.mkstemp(prefix="qconvert-", suffix=".log")
    log = os.fdopen(fd, "w", encoding="utf-8", buffering=1)
    saved_fds: dict[int, int] = {}
    saved_streams = (sys.stdout, sys.stderr)
    saved_loggers: list[tuple[logging.Logger, list[logging.Handler], bool]] = []
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    terminal: IO[str] = sys.stderr
    token = None
    pump: _FdTee | None = None
    try:
        for stream in (sys.stdout, sys.stderr):  # flush what is buffered for the real descriptors first
            with suppress(Exception):
                stream.flush()
        for target in (1, 2):
            with suppress(OSError):
                saved_fds[target] = os.dup(target)
        if echo and 2 in saved_fds:  # --verbose: C-level output to the log and the terminal alike
            pump = _FdTee(log.fileno(), saved_fds[2])
        for target in saved_fds:
            with suppress(OSError):
                os.dup2(pump.write_fd if pump is not None else log.fileno(), target)
        if pump is not None:
            pump.start()
        if 2 in saved_fds and _fd_of(sys.stderr) == 2:
            terminal = os.fdopen(os.dup(saved_fds[2]), "w", encoding="utf-8", buffering=1, errors="replace")
        cap = Capture(Path(name), terminal)
        token = _current.set(cap)
        tee = _Tee(log, terminal if echo else None)
        sys.stdout = tee  # third-party print() goes to the log too
        sys.stderr = tee  # and handlers a library creates inside the block
        handlers: list[logging.Handler] = [handler]
        if echo:
            echo_handler = logging.StreamHandler(terminal)
            echo_handler.setFormatter(handler.formatter)
            handlers.append(echo_handler)
        for lg in _third_party_loggers():
            saved_loggers.append((lg, list(lg.handlers), lg.propagate))
            lg.handlers = list(handlers)
            lg.propagate = False
        with warnings.catch_warnings():

            def show(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
                tee.write(warnings.formatwarning(message, category, filename, lineno, line))

            warnings.showwarning = show
            yield cap
    finally:
        for lg, old_handlers, propagate in saved_loggers:
            lg.handlers, lg.propagate = old_handlers, propagate
        sys.stdout, sys.stderr = saved_streams
        for stream in (sys.stdout, sys.stderr):
            with suppress(Exception):
                stream.flush()
        if terminal is not saved_streams[1]:
            with suppress(Exception):
                terminal.close()
        for target, dup in saved_fds.items():
            with suppress(OSError):
                os.dup2(dup, target)
                os.close(dup)
        if pump is not None:
            pump.finish()
        if token is not None:
            _current.reset(token)
        log.close()
        with suppress(OSError):
            os.unlink(name)
