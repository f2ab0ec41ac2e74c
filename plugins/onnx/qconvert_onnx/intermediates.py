"""onnxruntime's own quantized intermediate tensors, for per-layer parity.

At export, each of the simulation's activation quantize nodes is paired with the
QuantizeLinear it became (``map_quantized_tensors``, stored in the artifact's extra).
At verify time those QuantizeLinear outputs are added as graph outputs and the model
runs in onnxruntime with its normal graph optimizations: a QuantizeLinear output is
the output of the fused int8 node (QLinearConv, QLinearAdd, ...), so exposing it leaves
the fusions alone. ``qconvert_onnx.latency.count_int8_nodes`` gives the same int8 and
float node counts with and without the extra outputs (checked in the tests).

``run_with_intermediates`` needs numpy, onnx and onnxruntime only (no torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qconvert.targets import Intermediates, RuntimeTensor

if TYPE_CHECKING:
    from qconvert.targets import QuantizedModel

__all__ = ["constant_values", "expose", "map_quantized_tensors", "per_tensor_grid", "run_with_intermediates"]


def constant_values(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every initializer and Constant node output of ``model``, by tensor name."""
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    values[n.output[0]] = numpy_helper.to_array(a.t)
    return values


def per_tensor_grid(node: onnx.NodeProto, consts: Mapping[str, np.ndarray]) -> tuple[float, int, np.dtype] | None:
    """(scale, zero point, storage type) of a per-tensor QuantizeLinear or DequantizeLinear with constant parameters,
    else None (the zero point's absence means uint8 0, as in ONNX)."""
    scale = consts.get(node.input[1])
    zp = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if scale is None or scale.size != 1 or (len(node.input) > 2 and node.input[2] and zp is None):
        return None
    return (float(scale.reshape(())), int(zp.reshape(())) if zp is not None else 0,
            zp.dtype if zp is not None else np.dtype(np.uint8))


def map_quantized_tensors(model: onnx.ModelProto, qmodel: QuantizedModel) -> dict[str, str]:
    """Simulation quantize node -> the ONNX tensor holding its integers.

    The exporter keeps the graph's order, so the activation quantize nodes are paired in
    order, each with the next QuantizeLinear on the same grid (scale, zero point, type).
    A sub-8-bit tensor maps to the Clip that narrows it (``export.narrow_ranges``).
    """
    import torch

    wanted = [n for n in qmodel.graph.graph.nodes if n.target == torch.ops.quantized_decomposed.quantize_per_tensor.default]
    consts = constant_values(model)
    clips = {n.input[0]: n.output[0] for n in model.graph.node if n.op_type == "Clip" and n.output[0].endswith("_narrow")}
    found = [(n, per_tensor_grid(n, consts)) for n in model.graph.node if n.op_type == "QuantizeLinear"]
    mapping: dict[str, str] = {}
    at = 0
    for fx in wanted:
        scale, zp, dtype = float(np.float32(fx.args[1])), int(fx.args[2]), np.dtype(str(fx.args[5]).removeprefix("torch."))
        for i in range(at, len(found)):
            node, grid = found[i]
            if grid is not None and np.float32(grid[0]) == np.float32(scale) and grid[1] == zp and grid[2] == dtype:
                mapping[fx.name] = clips.get(node.output[0], node.output[0])
                at = i + 1
                break
    return mapping


#: Ops whose output is on their input's integer grid: the narrowing Clip (``export.narrow_ranges``) and a
#: Pad of the integers (``integer_pad``).
_SAME_GRID = ("Clip", "Pad")


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every QuantizeLinear output (and of a Clip or Pad after one): its zero point's type."""
    consts = constant_values(model)
    types: dict[str, int] = {}
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear":
            zp = consts.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
            types[n.output[0]] = helper.np_dtype_to_tensor_dtype(zp.dtype) if zp is not None else onnx.TensorProto.UINT8
    for n in model.graph.node:  # graph order: a Clip or Pad reads a tensor typed above it
        if n.op_type in _SAME_GRID and n.input[0] in types:
            types[n.output[0]] = types[n.input[0]]
    return types


def expose(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` with ``names`` (QuantizeLinear or narrowing Clip outputs) added as graph outputs."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    types = _elem_types(model)
    present = {o.name for o in out.graph.output}
    for name in names:
        if name not in present:
            out.graph.output.append(helper.make_tensor_value_info(name, types[name], None))
    return out


def _grids(model: onnx.ModelProto, names: list[str]) -> dict[str, tuple[float, int]]:
    consts = constant_values(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    grids: dict[str, tuple[float, int]] = {}
    for name in names:
        node = producer[name]
        while node.op_type in _SAME_GRID and node.input[0] in producer:
            node = producer[node.input[0]]
        g = per_tensor_grid(node, consts)
        if g is not None:
            grids[name] = (g[0], g[1])
    return grids


@lru_cache(maxsize=2)
def _session(path: str, mtime: float, names: tuple[str, ...]):
    import onnxruntime as ort

    model = onnx.load(path)
    producer = {o for n in model.graph.node for o in n.output}
    outputs = {o.name for o in model.graph.output}
    present = [n for n in names if n in producer and n in _elem_types(model) and n not in outputs]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(expose(model, present).SerializeToString(), sess_options=opts,
                                providers=["CPUExecutionProvider"])
    return sess, len(model.graph.output), present, _grids(model, present)


def run_with_intermediates(path: Path, inputs: dict[str, np.ndarray], mapping: Mapping[str, str]) -> Intermediates:
    """Run ``path`` in onnxruntime (default optimizations, as ``run_onnx``) with the mapped tensors exposed."""
    sess, n_out, present, grids = _session(str(path), path.stat().st_mtime, tuple(mapping.values()))
    feed = {i.name: inputs[i.name] for i in sess.get_inputs()}
    values = [np.asarray(v) for v in sess.run(None, feed)]
    by_name = dict(zip(present, values[n_out:]))
    tensors = {node: RuntimeTensor(name, by_name[name], *grids[name]) for node, name in mapping.items()
               if name in by_name and name in grids}
    missing = tuple(node for node in mapping if node not in tensors)
    return Intermediates(values[:n_out], tensors, missing)
