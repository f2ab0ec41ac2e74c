"""The verification process started ahead (``runtime.prestart``, the target's warm-up) serves the first library to
run, here or in one process forked after it (a build's ``--jobs`` worker); any other process starts its own."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

pytest.importorskip("tvm")

from qconvert_tvm import runtime
from qconvert_tvm.compile import compile_onnx
from qconvert_tvm.target_spec import parse_target

W = np.linspace(-1, 1, 4, dtype=np.float32)


def _library(tmp_path: Path) -> Path:
    """y = x + w, batch dynamic."""
    graph = h.make_graph([h.make_node("Add", ["x", "w"], ["y"])], "g", [h.make_tensor_value_info("x", T.FLOAT, ["n", 4])],
                         [h.make_tensor_value_info("y", T.FLOAT, ["n", 4])], [nh.from_array(W, "w")])
    compile_onnx(h.make_model(graph, opset_imports=[h.make_opsetid("", 18)]), parse_target("llvm"), tmp_path, "add.so", None)
    return tmp_path / "add.so"


def _run_and_report(library: str, conn: object) -> None:
    x = np.ones((2, 4), np.float32)
    (y,) = runtime.run_tvm(Path(library), [x])
    worker = runtime._worker(Path(library))
    conn.send((bool(np.array_equal(y, x + W)), worker.proc.pid))  # type: ignore[attr-defined]


def test_the_process_started_ahead_serves_one_process_only(tmp_path: Path) -> None:
    runtime.close_all()
    library = _library(tmp_path)
    runtime.prestart()
    assert runtime._spare is not None
    ahead = runtime._spare.worker.proc.pid
    ctx = multiprocessing.get_context("fork")
    pids = []
    for _ in range(2):  # two forked processes in turn: the first gets the process started ahead, the second its own
        mine, theirs = ctx.Pipe()
        child = ctx.Process(target=_run_and_report, args=(str(library), theirs))
        child.start()
        ok, pid = mine.recv()
        child.join()
        assert ok and child.exitcode == 0
        pids.append(pid)
    assert pids[0] == ahead and pids[1] != ahead
    x = np.zeros((3, 4), np.float32)
    (y,) = runtime.run_tvm(library, [x])  # here too the token is gone: a process of its own
    np.testing.assert_array_equal(y, x + W)
    assert runtime._worker(library).proc.pid != ahead
    runtime.close_all()
    assert runtime._spare is None


def test_a_process_started_ahead_and_unused_ends_with_close_all() -> None:
    runtime.close_all()
    runtime.prestart()
    assert runtime._spare is not None
    proc = runtime._spare.worker.proc
    runtime.close_all()
    assert proc.wait(timeout=30) == 0
