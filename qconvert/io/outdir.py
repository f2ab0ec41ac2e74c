"""Output directories: checked before any work, written beside, moved into place whole.

A command's ``--out`` is checked first (not a file, a parent that is a directory we can
write, not a directory of someone else's files that replacing would delete), so a build
never fails at its very end on a path it could have refused at the start. Results are
written to a temporary sibling and moved into place at the end; an earlier OUT is kept
until the new one is in place, and restored if the move is interrupted (Ctrl-C).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from qconvert.errors import BadInputError

__all__ = ["check_out_dir", "move_into_place", "staged_dir"]


def check_out_dir(out: Path, marker: str, flag: str = "--out") -> None:
    """Refuse an output path a command cannot (or must not) replace.

    ``marker`` is a file every earlier output of this command holds (``report.json``,
    ``stats.json``): an existing non-empty directory without it is not ours to replace.

    Raises:
        BadInputError: OUT is a file; a parent is a file or not writable; or OUT holds other files.
    """
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{flag} {out}: is a file, not a directory; give a new or empty directory (or remove the file)")
    if out.is_dir() and any(out.iterdir()) and not (out / marker).is_file():
        raise BadInputError(f"{flag} {out}: the directory holds files that are not an earlier qconvert output (no {marker}); "
                            "give a new or empty directory: OUT is replaced as a whole")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise BadInputError(f"{flag} {out}: {parent} is a file, so {out} cannot be created; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInputError(f"{flag} {out}: no permission to write in {parent}; choose a writable path")


def move_into_place(tmp: Path, out: Path) -> None:
    """Replace ``out`` by ``tmp``; an earlier ``out`` survives until the new one is in place."""
    if not out.exists():
        tmp.rename(out)
        return
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        if not out.exists():
            old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """A temporary sibling of ``out`` to write into; moved into place when the block ends without error,
    removed (with any parent directories it had to create) when it does not."""
    created: list[Path] = []
    parent = out.parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for d in created:  # innermost first
            with suppress(OSError):
                d.rmdir()
        raise

