"""End the ``qconvert`` process as soon as the command is done, without tearing the interpreter down.

After a build, Python's own shutdown (clearing every module of torch, dynamo, TensorFlow and TVM
and running their native destructors) took 1-4 s here: a third of a small build's wait, with
nothing left to do. ``run_then_exit`` runs the command, then the ``atexit`` handlers (temporary
files and folders are removed, compile-worker pools stopped, as on a normal exit), flushes stdout
and stderr, and ends the process with the command's exit code (``os._exit``). Only the console
script and ``python -m qconvert`` use it; the click command itself (tests, ``CliRunner``) exits as before.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable
from contextlib import suppress
from typing import NoReturn

__all__ = ["run_then_exit"]


def run_then_exit(command: Callable[[], object]) -> NoReturn:
    """Run ``command`` (a click command in standalone mode, which ends by raising ``SystemExit``), then exit at once."""
    try:
        command()
        code = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:  # sys.exit("message"): Python prints it and exits 1
            print(e.code, file=sys.stderr)
            code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):
            stream.flush()
    os._exit(code)
