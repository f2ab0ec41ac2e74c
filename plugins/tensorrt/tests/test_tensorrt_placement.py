"""TensorRT's Q/DQ placement rules, each checked on the ONNX of the pattern it is about.

The expectations come from TensorRT's placement guidance (quantize what int8
kernels read, leave outputs to the consumer, quantize the residual branch of an
add that fuses into a conv), worked out by hand per pattern.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

WEIGHTED = ("Conv", "Gemm", "MatMul")


class Graph:
    """Read-only view of an ONNX graph: who produces and who consumes each tensor."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.nodes = list(model.graph.node)
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        for n in self.nodes:
            if n.op_type == "Constant":
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        self.outputs = [o.name for o in model.graph.output]

    def op(self, op_type: str) -> list[onnx.NodeProto]:
        return [n for n in self.nodes if n.op_type == op_type]

    def src(self, tensor: str) -> str:
        p = self.producer.get(tensor)
        return p.op_type if p is not None else ("const" if tensor in self.consts else "input")

    def quantized_activation(self, tensor: str) -> str | None:
        """The float tensor behind DQ(Q(t)) feeding ``tensor``, else None."""
        dq = self.producer.get(tensor)
        if dq is None or dq.op_type != "DequantizeLinear":
            return None
        q = self.producer.get(dq.input[0])
        return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else None

    def int8_weight(self, tensor: str) -> np.ndarray | None:
        """The int8 weights behind DQ(W) (or Transpose(DQ(W)) for a linear on 3-D input) feeding ``tensor``."""
        p = self.producer.get(tensor)
        if p is not None and p.op_type == "Transpose":
            p = self.producer.get(p.input[0])
        if p is None or p.op_type != "DequantizeLinear" or p.input[0] not in self.consts:
            return None
        return self.consts[p.input[0]]

    def from_dq(self, tensor: str) -> bool:
        return self.src(tensor) == "DequantizeLinear"


def _g(patterns: dict, name: str) -> Graph:
    return Graph(patterns[name].onnx)


ALL = ["resnet_identity", "resnet_downsample", "mobilenetv2", "transformer", "float_ops"]


@pytest.mark.parametrize("name", ALL)
def test_rule1_conv_gemm_matmul_read_int8_inputs_and_weights(patterns: dict, name: str) -> None:
    g = _g(patterns, name)
    compute = [n for n in g.nodes if n.op_type in WEIGHTED]
    assert compute
    for n in compute:
        operands = n.input[:2]
        for t in operands:
            assert g.quantized_activation(t) is not None or g.int8_weight(t) is not None, f"{n.name}: {t} is not quantized"
        if n.op_type in ("Conv", "Gemm"):
            assert g.int8_weight(n.input[1]) is not None and g.quantized_activation(n.input[0]) is not None


# Q nodes expected from the rules, by hand: one per distinct tensor an int8 kernel or a residual branch reads.
EXPECTED_Q = {
    "resnet_identity": 2,  # x (conv1 and the shortcut), relu1 (conv2)
    "resnet_downsample": 3,  # x (conv1 and downsample conv), relu1 (conv2), downsample output (shortcut)
    "mobilenetv2": 3,  # x (expand conv and the shortcut), relu6 after expand (dw), relu6 after dw (project)
    # x (shortcut 1), ln1 (q/k/v), q, k^T, v, softmax, attention output (o), shortcut 2, ln2 (fc1), gelu (fc2)
    "transformer": 10,
    "float_ops": 2,  # x (both convs), flatten (fc)
}


@pytest.mark.parametrize("name", ALL)
def test_rule2_outputs_are_left_to_the_consumer(patterns: dict, name: str) -> None:
    g = _g(patterns, name)
    assert len(g.op("QuantizeLinear")) == EXPECTED_Q[name]
    for out in g.outputs:
        assert not g.from_dq(out), "the graph output must stay float"
    for q in g.op("QuantizeLinear"):
        for dq in g.consumers[q.output[0]]:
            assert dq.op_type == "DequantizeLinear"
            assert {u.op_type for u in g.consumers[dq.output[0]]} <= {*WEIGHTED, "Add"}, f"{dq.name} feeds a float-only op"


def _residual_adds(g: Graph) -> list[onnx.NodeProto]:
    return [n for n in g.op("Add") if any(g.from_dq(i) for i in n.input)]


def test_rule3_identity_shortcut_quantized_conv_branch_fused(patterns: dict) -> None:
    g = _g(patterns, "resnet_identity")
    (add,) = g.op("Add")
    srcs = sorted(g.src(i) for i in add.input)
    assert srcs == ["Conv", "DequantizeLinear"]
    shortcut = next(i for i in add.input if g.from_dq(i))
    assert g.quantized_activation(shortcut) == "x"


def test_rule3_downsample_branch_quantized_main_branch_fused(patterns: dict) -> None:
    g = _g(patterns, "resnet_downsample")
    (add,) = g.op("Add")
    fused = next(i for i in add.input if not g.from_dq(i))
    shortcut = g.quantized_activation(next(i for i in add.input if g.from_dq(i)))
    assert shortcut is not None
    conv_fused, conv_short = g.producer[fused], g.producer[shortcut]
    assert conv_fused.op_type == conv_short.op_type == "Conv"
    short_w, fused_w = g.int8_weight(conv_short.input[1]), g.int8_weight(conv_fused.input[1])
    assert short_w is not None and short_w.shape[2:] == (1, 1)  # the 1x1 downsample conv
    assert fused_w is not None and fused_w.shape[2:] == (3, 3)  # conv2 of the main branch


def test_rule3_inverted_residual(patterns: dict) -> None:
    g = _g(patterns, "mobilenetv2")
    (add,) = g.op("Add")
    project = g.producer[next(i for i in add.input if not g.from_dq(i))]
    w = g.int8_weight(project.input[1])
    assert project.op_type == "Conv" and w is not None and w.shape == (8, 32, 1, 1)
    assert g.quantized_activation(next(i for i in add.input if g.from_dq(i))) == "x"
    # relu6 outputs feed the next conv through Q/DQ; the depthwise weights are per-channel (32 scales on axis 0)
    dw = next(n for n in g.op("Conv") if next((a.i for a in n.attribute if a.name == "group"), 1) == 32)
    assert g.src(g.quantized_activation(dw.input[0]) or "") == "Clip"
    wdq = g.producer[dw.input[1]]
    assert g.consts[wdq.input[1]].shape == (32,) and next(a.i for a in wdq.attribute if a.name == "axis") == 0


def test_rule3_transformer_residuals_fuse_into_the_linear(patterns: dict) -> None:
    g = _g(patterns, "transformer")
    adds = _residual_adds(g)
    assert len(adds) == 2
    for add in adds:
        other = g.producer[next(i for i in add.input if not g.from_dq(i))]
        # a linear on 3-D input exports as MatMul + bias Add: the residual add follows that bias add
        assert other.op_type == "Add" and g.src(other.input[0]) == "MatMul"


def test_rule4_float_ops_get_no_qdq(patterns: dict) -> None:
    g = _g(patterns, "float_ops")
    for op in ("Concat", "Mul", "AveragePool", "MaxPool", "Add"):
        for n in g.op(op):
            assert not any(g.from_dq(i) for i in n.input), f"{op} reads a DQ"
            assert not any(u.op_type == "QuantizeLinear" for o in n.output for u in g.consumers.get(o, [])), f"{op} feeds a Q"
    t = _g(patterns, "transformer")
    for op in ("LayerNormalization", "Softmax", "Gelu", "Mul"):
        assert t.op(op), op
        for n in t.op(op):
            assert not any(t.from_dq(i) for i in n.input), f"{op} must read float"


@pytest.mark.parametrize("name", ALL)
def test_rule5_biases_stay_float(patterns: dict, name: str) -> None:
    g = _g(patterns, name)
    for n in g.op("Conv") + g.op("Gemm"):
        if len(n.input) > 2:
            assert g.src(n.input[2]) == "const" and g.consts[n.input[2]].dtype == np.float32
    assert not any(v.dtype == np.int32 for v in g.consts.values() if v.ndim == 1 and v.size > 1)


def _check_symmetric_int8(model: onnx.ModelProto) -> tuple[int, int]:
    """Asserts the rules on every Q and DQ; returns (activation Q nodes, weight DQ nodes)."""
    g = Graph(model)
    weights = 0
    for n in g.op("QuantizeLinear") + g.op("DequantizeLinear"):
        zp, scale = g.consts[n.input[2]], g.consts[n.input[1]]
        assert zp.dtype == np.int8 and not np.any(zp), f"{n.name}: zero point {zp}"
        assert np.all(scale > 0)
        w = g.consts.get(n.input[0])
        if w is None:  # an activation: per tensor, full int8 range
            assert scale.size == 1
        else:  # a weight: int8 in [-127, 127], per-channel on the output-channel axis
            assert w.dtype == np.int8 and w.min() >= -127
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            assert scale.size == 1 or (axis == 0 and scale.size == w.shape[0])
            weights += 1
    return len(g.op("QuantizeLinear")), weights


@pytest.mark.parametrize("name", ALL)
def test_every_qdq_is_symmetric_int8_with_zero_point_0(patterns: dict, name: str) -> None:
    weights = {"resnet_identity": 2, "resnet_downsample": 3, "mobilenetv2": 3, "transformer": 6, "float_ops": 3}
    assert _check_symmetric_int8(patterns[name].onnx) == (EXPECTED_Q[name], weights[name])


def test_digits_artifact_is_symmetric_int8(tensorrt_build: Path) -> None:
    model = onnx.load(tensorrt_build / "tensorrt" / "model.onnx")
    onnx.checker.check_model(model, full_check=True)
    # 5 convs + 1 linear; activations x, stem, block conv1, block relu, dw, flatten
    assert _check_symmetric_int8(model) == (6, 6)
