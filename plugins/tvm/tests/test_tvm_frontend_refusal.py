"""A model TVM's Relax ONNX frontend cannot import ends in one line and exit 2, nothing else.

The failed frontend leaves a half-built BlockBuilder whose C++ destructor warns on stderr.
It used to run at interpreter exit, after our error line, so the user saw TVM's warning too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_build import build_tvm_from_source

MODEL = '''
import torch
from torch import nn


class RowGRU(nn.Module):
    """Rows of an 8x8 image as a sequence: TVM's Relax ONNX frontend has no GRU converter (an LSTM is unrolled)."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(8, 16, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        out, _ = self.gru(x)
        return self.head(out[:, -1])


def build():
    torch.manual_seed(0)
    return RowGRU().eval()
'''

@pytest.mark.slow
def test_unsupported_op_is_one_line_with_no_tvm_output(tmp_path: Path) -> None:
    p = build_tvm_from_source(tmp_path, MODEL, np.random.default_rng(0).standard_normal((32, 8, 8)).astype(np.float32))
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2, p.stderr
    assert len(lines) == 1 and lines[0].startswith("error: TVM's Relax ONNX frontend cannot import the model"), p.stderr
    assert "GRU" in lines[0] and "onnx target" in lines[0]
    assert not (tmp_path / "OUT").exists()


FAILING_MAX = """
import sys

import numpy as np
from onnx import TensorProto as T, helper as h, numpy_helper as nh

from qconvert_tvm.compile import TvmCompileError, _relax_module

# Range -> Unsqueeze x2 -> Max with a constant: the shape of transformers' BERT position mask,
# which the Relax frontend's Max converter fails on after it has started building blocks.
const = {"s": np.array(0, np.int64), "l": np.array(32, np.int64), "d": np.array(1, np.int64),
         "a0": np.array([1, 2], np.int64), "a1": np.array([3], np.int64),
         "c": np.arange(32, dtype=np.int64).reshape(1, 1, 1, 32)}
nodes = [h.make_node("Range", ["s", "l", "d"], ["r"]), h.make_node("Unsqueeze", ["r", "a0"], ["u1"]),
         h.make_node("Unsqueeze", ["u1", "a1"], ["u2"]), h.make_node("Max", ["u2", "c"], ["m"]),
         h.make_node("Cast", ["m"], ["mf"], to=T.FLOAT), h.make_node("Add", ["x", "mf"], ["y"])]
graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 1, 1, 32])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, 1, 1, 32])],
                     [nh.from_array(v, k) for k, v in const.items()])
try:
    _relax_module(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]))
except TvmCompileError as e:
    print("REFUSED", str(e), file=sys.stderr, flush=True)
"""


def test_failed_frontend_is_freed_before_the_error_reaches_the_user(tmp_path: Path) -> None:
    """TVM's destructor warning comes out while the build still captures output, never after our line."""
    from qconvert_tvm import TvmTarget

    if not TvmTarget().available().ok:
        pytest.skip(TvmTarget().available().reason)
    script = tmp_path / "failing_max.py"
    script.write_text(FAILING_MAX)
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=False)
    assert "REFUSED" in p.stderr and "at its Max converter" in p.stderr, p.stderr
    after = p.stderr.split("REFUSED", 1)[1]
    assert "BlockBuilder" not in after, p.stderr
