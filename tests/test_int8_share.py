"""bench.int8_share: the MACs onnxruntime runs in int8 are those of convs between 8-bit Q/DQ; a conv whose
output is quantized to 16 bits (or not at all) runs in float and does not count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bench.int8_share import int8_share


def _conv_block(i: int, x: str, out_type: int) -> tuple[list, list]:
    """DQ(x) -> Conv(DQ(int8 weight 4x4x3x3)) -> Relu -> Q(out_type) -> DQ; returns nodes and initializers."""
    zp_in = numpy_helper.from_array(np.array(0, np.uint8), f"zin{i}")
    zp_out = numpy_helper.from_array(np.array(0, np.uint16 if out_type == TensorProto.UINT16 else np.uint8), f"zout{i}")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), f"s{i}")
    w = numpy_helper.from_array(np.ones((4, 4, 3, 3), np.int8), f"w{i}")
    wzp = numpy_helper.from_array(np.array(0, np.int8), f"wz{i}")
    nodes = [
        helper.make_node("DequantizeLinear", [x, f"s{i}", f"zin{i}"], [f"xf{i}"]),
        helper.make_node("DequantizeLinear", [f"w{i}", f"s{i}", f"wz{i}"], [f"wf{i}"]),
        helper.make_node("Conv", [f"xf{i}", f"wf{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
        helper.make_node("QuantizeLinear", [f"r{i}", f"s{i}", f"zout{i}"], [f"q{i}"]),
    ]
    return nodes, [zp_in, zp_out, scale, w, wzp]


def test_int8_share_counts_convs_between_8bit_qdq(tmp_path: Path) -> None:
    n1, i1 = _conv_block(1, "x", TensorProto.UINT8)
    n2, i2 = _conv_block(2, "q1", TensorProto.UINT16)
    graph = helper.make_graph(n1 + n2, "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("q2", TensorProto.UINT16, [1, 4, 8, 8])], initializer=i1 + i2)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), str(path))
    share = int8_share(path)
    per_conv = 4 * 8 * 8 * 4 * 3 * 3
    assert share.macs == 2 * per_conv
    assert share.int8_macs == per_conv  # the second conv's output is 16-bit: float in onnxruntime
    assert share.share == 0.5
