"""Progress for long steps: bars on an interactive terminal, silence in CI logs.

The CLI decides where progress goes and installs it with ``reporting``; core code only
wraps its long loops in ``track``, which is a plain pass-through when nobody listens
(tests, the Python API, CI), so the core never prints.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, TypeVar

__all__ = ["TerminalProgress", "interactive", "reporting", "track"]

T = TypeVar("T")
_BAR = 28
_active: ContextVar[TerminalProgress | None] = ContextVar("qconvert_progress", default=None)


def interactive(stream: IO[str]) -> bool:
    """A person is watching: a terminal, and not a CI job (CI=true is set by every CI service)."""
    return stream.isatty() and not os.environ.get("CI")


class TerminalProgress:
    """Step messages ("... calibrate on 256 samples") and redrawn bars on one stream."""

    def __init__(self, enabled: bool, stream: IO[str] | None = None) -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr

    def __call__(self, msg: str) -> None:
        if self.enabled:
            self.stream.write(f"... {msg}\n")
            self.stream.flush()

    def track(self, items: Iterable[T], total: int, label: str) -> Iterator[T]:
        """Yield ``items``, drawing ``label [#####   ] i/total`` at most ten times a second."""
        if not self.enabled or total <= 0:
            yield from items
            return
        last = 0.0
        done = 0
        try:
            for item in items:
                yield item
                done += 1
                now = time.monotonic()
                if now - last > 0.1 or done == total:
                    self._draw(label, done, total)
                    last = now
        finally:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, label: str, done: int, total: int) -> None:
        filled = _BAR * min(done, total) // total
        self.stream.write(f"\r{label} [{'#' * filled}{' ' * (_BAR - filled)}] {done}/{total}")
        self.stream.flush()


@contextmanager
def reporting(progress: TerminalProgress) -> Iterator[TerminalProgress]:
    """Send ``track`` bars to ``progress`` inside the block (restored on exit)."""
    token = _active.set(progress)
    try:
        yield progress
    finally:
        _active.reset(token)


def track(items: Iterable[T], total: int, label: str) -> Iterable[T]:
    """``items`` with a progress bar when the CLI installed one, else ``items`` unchanged."""
    p = _active.get()
    return p.track(items, total, label) if p is not None else items
