"""The ONNX TensorRT parses: the core's Q/DQ graph exported by qconvert-onnx, checked against
the rules onnx-tensorrt enforces before it is written, so a wrong file never reaches a build."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from qconvert_onnx.export import export_onnx_model

from qconvert.targets import QuantizedModel

__all__ = ["constant_values", "export_for_tensorrt", "qdq_violations"]

_QDQ = ("QuantizeLinear", "DequantizeLinear")
_WEIGHTED = ("Conv", "Gemm", "MatMul")


def export_for_tensorrt(qmodel: QuantizedModel, path: Path) -> onnx.ModelProto:
    """Export, check and save; raises RuntimeError naming the node when a Q/DQ breaks TensorRT's rules
    (the target's constraints make that a bug, not a user error)."""
    model = export_onnx_model(qmodel)
    onnx.checker.check_model(model, full_check=True)
    problems = qdq_violations(model)
    if problems:
        raise RuntimeError(f"the ONNX breaks TensorRT's Q/DQ rules: {'; '.join(problems[:3])}")
    onnx.save(model, path)
    return model


def constant_values(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializers and Constant-node outputs by tensor name."""
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return values


def qdq_violations(model: onnx.ModelProto) -> list[str]:
    """Every way a Q/DQ node breaks what onnx-tensorrt accepts: int8 only, zero point 0,
    weights in [-127, 127], per-channel only on axis 0 of a Conv/Gemm/MatMul weight."""
    consts = constant_values(model)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out: list[str] = []
    for n in model.graph.node:
        if n.op_type not in _QDQ:
            continue
        zp = consts.get(n.input[2]) if len(n.input) > 2 else None
        if zp is None or zp.dtype != np.int8 or np.any(zp != 0):
            out.append(f"{n.name}: zero point must be an int8 0, got {zp!r}")
        scale = consts.get(n.input[1])
        if scale is None or np.any(scale <= 0):
            out.append(f"{n.name}: scale must be a positive constant")
        elif scale.size > 1:
            out += _per_channel_problems(n, consumers)
        weights = consts.get(n.input[0]) if n.op_type == "DequantizeLinear" else None
        if weights is not None and (weights.dtype != np.int8 or int(weights.min(initial=0)) < -127):
            out.append(f"{n.name}: weights must be int8 in [-127, 127]")
    return out


def _per_channel_problems(n: onnx.NodeProto, consumers: dict[str, list[onnx.NodeProto]]) -> list[str]:
    axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
    users = consumers.get(n.output[0], [])
    # a linear on 3-D input exports as Transpose(W) -> MatMul: axis 0 of W is then MatMul's output axis
    users = [v for u in users for v in (consumers.get(u.output[0], []) if u.op_type == "Transpose" else [u])]
    if n.op_type != "DequantizeLinear" or axis != 0 or not users or any(u.op_type not in _WEIGHTED for u in users):
        return [f"{n.name}: per-channel Q/DQ only for weights on axis 0 (got axis {axis}, used by {[u.op_type for u in users]})"]
    return []
