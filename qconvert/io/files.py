"""One hardened way to open every file a user gives qconvert.

Recipes, weights, ``.pt2`` programs, QAT checkpoints, ``.npz``/``.npy`` data, image folders,
stats directories, manifests and golden files all go through ``check_file``/``check_dir``
(missing, a directory where a file is expected or the reverse, unreadable, empty) and read
inside ``reading`` (truncated, corrupt, wrong format: whatever the third-party loader
raises). Each failure is the reader's ``BadInputError`` subclass with one line saying what
is wrong with which file and how to fix it, so the CLI exits 2 without a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from qconvert.errors import BadInputError, QConvertError

__all__ = ["check_dir", "check_file", "first_line", "reading"]


def first_line(e: BaseException) -> str:
    """``Type: first line of the message``, at most 200 characters."""
    lines = str(e).strip().splitlines()
    text = f"{type(e).__name__}: {lines[0].strip()}" if lines else type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def check_file(path: str | Path, what: str, error: type[BadInputError], fix: str, allow_empty: bool = False) -> Path:
    """``path`` as an existing, readable, non-empty regular file.

    Raises:
        error: missing, a directory, unreadable, or empty; the message ends with ``fix``.
    """
    p = Path(path)
    if not p.exists():
        raise error(f"{what} not found: {p} ({fix})")
    if p.is_dir():
        raise error(f"{p}: is a directory, but the {what} must be a file ({fix})")
    if not os.access(p, os.R_OK):
        raise error(f"{p}: cannot read the {what} (permission denied); make it readable")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise error(f"{p}: cannot read the {what} ({first_line(e)})") from e
    if size == 0 and not allow_empty:
        raise error(f"{p}: the {what} is empty (0 bytes); {fix}")
    return p


def check_dir(path: str | Path, what: str, error: type[BadInputError], fix: str) -> Path:
    """``path`` as an existing, readable directory.

    Raises:
        error: missing, a regular file, or unreadable.
    """
    p = Path(path)
    if not p.exists():
        raise error(f"{what} not found: {p} ({fix})")
    if not p.is_dir():
        raise error(f"{p}: is a file, but the {what} must be a directory ({fix})")
    if not os.access(p, os.R_OK | os.X_OK):
        raise error(f"{p}: cannot read the {what} (permission denied); make it readable")
    return p


@contextmanager
def reading(path: str | Path, what: str, error: type[BadInputError], fix: str) -> Iterator[None]:
    """Turn whatever a loader raises on a bad file into one ``error`` line naming the file.

    qconvert's own errors and Ctrl-C pass through unchanged.
    """
    try:
        yield
    except QConvertError:
        raise
    except Exception as e:
        raise error(f"{path}: not a readable {what}, it may be truncated or corrupt ({first_line(e)}); {fix}") from e
