"""``python worker.py LIB``: load an exported library in a fresh process and serve runs.

The process imports only numpy and TVM, with torch hidden, so a run proves the
exported files alone are enough. Started without ``LIB`` (ahead of the build's
need, ``runtime.prestart``), it imports TVM and then reads the library's path as
its first message. Protocol on stdin/stdout, one message each way per run:
an 8-byte little-endian length, then an ``.npz`` (inputs ``arr_0..``; outputs
likewise). A failure answers length 0 followed by a length-prefixed UTF-8 reason.
"""

from __future__ import annotations

import io
import struct
import sys
from typing import IO

import numpy as np

__all__ = ["main", "read_message", "write_message"]


def read_message(stream: IO[bytes]) -> bytes | None:
    head = stream.read(8)
    if len(head) < 8:
        return None
    (size,) = struct.unpack("<Q", head)
    return stream.read(size)


def write_message(stream: IO[bytes], payload: bytes) -> None:
    stream.write(struct.pack("<Q", len(payload)) + payload)
    stream.flush()


def pack(arrays: list[np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, *arrays)
    return buf.getvalue()


def unpack(payload: bytes) -> list[np.ndarray]:
    with np.load(io.BytesIO(payload)) as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]


def _outputs(result: object) -> list[np.ndarray]:
    if hasattr(result, "numpy"):
        return [result.numpy()]
    return [o.numpy() for o in result]  # type: ignore[attr-defined]  # TVM runtime tensors (untyped)


def main(argv: list[str]) -> int:
    # Run as a board would, without torch: tvm_ffi imports torch when it can (seconds, and it
    # would hide a dependency of the artifact on it); a None entry makes that import fail.
    sys.modules.setdefault("torch", None)  # type: ignore[arg-type]  # None blocks the import, as intended
    import tvm
    from tvm import relax

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    if argv:
        library = argv[0]
    else:  # started ahead: the library comes as the first message
        first = read_message(stdin)
        if first is None:  # not needed after all
            return 0
        library = first.decode()
    vm = relax.VirtualMachine(tvm.runtime.load_module(library), tvm.cpu())
    sys.stdout = sys.stderr  # anything printed by TVM must not corrupt the protocol
    while (msg := read_message(stdin)) is not None:
        try:
            args = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in unpack(msg)]
            write_message(stdout, pack(_outputs(vm["main"](*args))))
        except Exception as e:  # noqa: BLE001 - any failure is reported to the caller, which raises it
            write_message(stdout, b"")
            write_message(stdout, f"{type(e).__name__}: {e}".encode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
