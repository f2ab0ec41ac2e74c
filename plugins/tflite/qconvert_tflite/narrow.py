"""Bound sub-8-bit activations of a .tflite to their own range with integer MINIMUM/MAXIMUM ops.

TFLite's quantization parameters carry a scale and a zero point, not a range: every int8
kernel saturates its output to [-128, 127] (or to its fused activation). A 7-bit tensor
(torch.ao's ``reduce_range``: [0, 127] as uint8, stored as int8 [-128, -1]) or a 4-bit one
must saturate to its own range, as the simulation's quantize does. So, after the op that
produces such a tensor (and after a graph input on one), the edited model runs an int8
MINIMUM with the top code and/or a MAXIMUM with the bottom code, on the same grid, which
gives exactly the simulation's saturation; consumers and graph outputs read the bounded
tensor. Ops that only move or average values on the same grid (reshape, pooling, pad...)
keep a bounded input bounded and get no extra op.

The bounded tensor is named ``<tensor>_narrow``; per-layer parity reads it, not the raw one.
"""

from __future__ import annotations

from collections.abc import Mapping

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as fb

__all__ = ["NARROW_SUFFIX", "Grid", "bound_narrow_ranges", "bounded_count", "bounded_inputs"]

#: (float32 scale, int8 zero point) of a per-tensor grid as the flatbuffer stores it.
Grid = tuple[float, int]

NARROW_SUFFIX = "_narrow"
_MIN_SUFFIX = "_narrow_min"

_OP_NAMES = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
#: Ops whose int8 output, on their input's grid, stays within the input's range.
_RANGE_KEEPING = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN", "PAD",
                  "SLICE", "STRIDED_SLICE", "GATHER", "SPLIT", "SPLIT_V", "PACK", "UNPACK", "CONCATENATION", "TILE",
                  "BROADCAST_TO", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "REDUCE_MAX", "REDUCE_MIN"}


def _name(t: fb.TensorT) -> str:
    return t.name.decode() if isinstance(t.name, bytes) else str(t.name)


def _grid(t: fb.TensorT) -> Grid | None:
    q = t.quantization
    if t.type != fb.TensorType.INT8 or q is None or q.scale is None or len(q.scale) != 1:
        return None
    zp = int(q.zeroPoint[0]) if q.zeroPoint is not None and len(q.zeroPoint) else 0
    return float(np.float32(q.scale[0])), zp


def _activations(model: fb.ModelT, sg: fb.SubGraphT, op: fb.OperatorT) -> list[int]:
    """The non-constant inputs of ``op``."""
    out = []
    for i in (int(v) for v in op.inputs):
        data = model.buffers[sg.tensors[i].buffer].data if i >= 0 else None
        if i >= 0 and (data is None or len(data) == 0):
            out.append(i)
    return out


def _opcode(model: fb.ModelT, code: int) -> int:
    for i, oc in enumerate(model.operatorCodes):
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code:
            oc.version = max(oc.version, 2)  # version 2: int8
            return i
    oc = fb.OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 2
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _like(model: fb.ModelT, sg: fb.SubGraphT, src: fb.TensorT, name: str, value: int | None = None) -> int:
    """A new int8 tensor on ``src``'s grid: an activation shaped like ``src``, or a scalar constant ``value``."""
    t = fb.TensorT()
    t.type, t.name = fb.TensorType.INT8, name
    q = fb.QuantizationParametersT()
    q.scale, q.zeroPoint = [float(src.quantization.scale[0])], [int(src.quantization.zeroPoint[0])]
    t.quantization = q
    buf = fb.BufferT()
    if value is None:
        t.shape = [int(v) for v in src.shape]
        t.shapeSignature = None if src.shapeSignature is None else [int(v) for v in src.shapeSignature]
        t.hasRank = src.hasRank
    else:
        t.shape, t.hasRank = [], True
        buf.data = np.array([value], dtype=np.int8).view(np.uint8)
    model.buffers.append(buf)
    t.buffer = len(model.buffers) - 1
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def _fused_range(op: fb.OperatorT | None, grid: Grid) -> tuple[int, int]:
    """The int8 range the producing op's fused activation already saturates to (TFLite's own rule)."""
    act = getattr(op.builtinOptions, "fusedActivationFunction", None) if op is not None else None
    scale, zp = grid
    real = {fb.ActivationFunctionType.RELU: (0.0, None), fb.ActivationFunctionType.RELU6: (0.0, 6.0),
            fb.ActivationFunctionType.RELU_N1_TO_1: (-1.0, 1.0)}.get(act, (None, None))
    lo = -128 if real[0] is None else max(-128, zp + round(real[0] / scale))
    hi = 127 if real[1] is None else min(127, zp + round(real[1] / scale))
    return lo, hi


def _bound(model: fb.ModelT, sg: fb.SubGraphT, index: int, want: tuple[int, int], producer: fb.OperatorT | None,
           serial: int) -> tuple[list[fb.OperatorT], int]:
    """MINIMUM/MAXIMUM ops that bound tensor ``index`` to ``want``, and the bounded tensor (``index`` if none is needed)."""
    src = sg.tensors[index]
    grid = _grid(src)
    assert grid is not None
    lo, hi = _fused_range(producer, grid)
    steps = [(code, v) for code, v, done in ((fb.BuiltinOperator.MINIMUM, want[1], hi <= want[1]),
                                             (fb.BuiltinOperator.MAXIMUM, want[0], lo >= want[0])) if not done]
    ops: list[fb.OperatorT] = []
    current = index
    for k, (code, value) in enumerate(steps):
        last = k == len(steps) - 1
        out = _like(model, sg, src, _name(src) + NARROW_SUFFIX if last else f"narrow{serial}{_MIN_SUFFIX}")
        const = _like(model, sg, src, f"narrow{serial}_{'max' if code == fb.BuiltinOperator.MINIMUM else 'min'}", value)
        op = fb.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = _opcode(model, code), [current, const], [out]
        op.builtinOptionsType = fb.BuiltinOptions.MaximumMinimumOptions
        op.builtinOptions = fb.MaximumMinimumOptionsT()
        ops.append(op)
        current = out
    return ops, current


def bound_narrow_ranges(buf: bytes, ranges: Mapping[Grid, tuple[int, int]]) -> tuple[bytes, int]:
    """``buf`` with every int8 activation on a grid of ``ranges`` bounded to its (int8) range; and how many."""
    ranges = {g: r for g, r in ranges.items() if r != (-128, 127)}
    if not ranges:
        return buf, 0
    model = fb.ModelT.InitFromPackedBuf(buf, 0)
    sg = model.subgraphs[0]
    sg.inputs, sg.outputs = [int(i) for i in sg.inputs], [int(i) for i in sg.outputs]
    remap: dict[int, int] = {}
    head: list[fb.OperatorT] = []
    body: list[fb.OperatorT] = []

    def bound(index: int, producer: fb.OperatorT | None) -> list[fb.OperatorT]:
        g = _grid(sg.tensors[index])
        if g is None or g not in ranges or index in remap:
            return []
        ops, bounded = _bound(model, sg, index, ranges[g], producer, len(remap))
        if ops:
            remap[index] = bounded
        return ops

    for i in sg.inputs:
        head += bound(i, None)
    for op in list(sg.operators):
        op.inputs = [remap.get(int(i), int(i)) for i in op.inputs]
        body.append(op)
        name = _OP_NAMES.get(max(model.operatorCodes[op.opcodeIndex].builtinCode,
                                 model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode), "CUSTOM")
        for o in (int(v) for v in op.outputs):
            g = _grid(sg.tensors[o]) if o >= 0 else None
            keeps = name in _RANGE_KEEPING and all(_grid(sg.tensors[i]) == g for i in _activations(model, sg, op))
            if o >= 0 and not keeps:
                body += bound(o, op)
    if not remap:
        return buf, 0
    sg.operators = head + body
    sg.outputs = [remap.get(i, i) for i in sg.outputs]
    for sig in model.signatureDefs or []:
        for tm in list(sig.outputs or []):
            tm.tensorIndex = remap.get(tm.tensorIndex, tm.tensorIndex)
    builder = flatbuffers.Builder(len(buf) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), len(remap)


def bounded_inputs(model: fb.ModelT) -> set[int]:
    """Tensors that a narrowing op reads (the raw, unbounded value): per-layer parity skips them."""
    sg = model.subgraphs[0]
    return {int(op.inputs[0]) for op in sg.operators
            if op.outputs is not None and len(op.outputs) and _name(sg.tensors[int(op.outputs[0])]).endswith((NARROW_SUFFIX, _MIN_SUFFIX))}


def bounded_count(buf: bytes) -> int:
    """How many tensors of ``buf`` a narrowing op bounds."""
    sg = fb.ModelT.InitFromPackedBuf(buf, 0).subgraphs[0]
    return sum(1 for t in sg.tensors if _name(t).endswith(NARROW_SUFFIX))
