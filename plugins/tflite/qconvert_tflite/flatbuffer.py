"""Read and edit a .tflite flatbuffer with LiteRT's generated schema (no interpreter).

``float_edges`` adds QUANTIZE before each input and DEQUANTIZE after each output,
so a full-integer model takes and gives float32; ``inventory`` says which ops and
tensors a model has, which the target uses to prove it is full-integer.
"""

from __future__ import annotations

from dataclasses import dataclass

import flatbuffers
from ai_edge_litert import schema_py_generated as fb

__all__ = ["EdgeQuant", "Inventory", "float_edges", "inventory", "widen_16x8_biases"]

_OP_NAMES = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k.lower() for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
#: Ops that are allowed to see float tensors in a full-integer model: the edge converters.
_EDGE_OPS = {"QUANTIZE", "DEQUANTIZE"}


@dataclass(frozen=True)
class EdgeQuant:
    """One model input or output: its storage type and, when integer, its quantization."""

    dtype: str
    shape: tuple[int, ...]
    scale: float | None
    zero_point: int | None


@dataclass(frozen=True)
class Inventory:
    """What a model contains, counted from the flatbuffer."""

    op_counts: dict[str, int]
    inputs: tuple[EdgeQuant, ...]
    outputs: tuple[EdgeQuant, ...]
    #: Ops other than QUANTIZE/DEQUANTIZE that read or write a float32 tensor.
    float_ops: tuple[str, ...]


def _model(buf: bytes) -> fb.ModelT:
    return fb.ModelT.InitFromPackedBuf(buf, 0)


def _op_name(model: fb.ModelT, op: fb.OperatorT) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    return _OP_NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")


def _edge(t: fb.TensorT) -> EdgeQuant:
    q = t.quantization
    scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) == 1 else None
    zp = int(q.zeroPoint[0]) if scale is not None and q.zeroPoint is not None else None
    return EdgeQuant(_TYPE_NAMES.get(t.type, str(t.type)), tuple(int(v) for v in t.shape), scale, zp)


def inventory(buf: bytes) -> Inventory:
    model = _model(buf)
    sg = model.subgraphs[0]
    counts: dict[str, int] = {}
    float_ops: list[str] = []
    for op in sg.operators:
        name = _op_name(model, op)
        counts[name] = counts.get(name, 0) + 1
        tensors = [sg.tensors[i] for i in list(op.inputs) + list(op.outputs) if i >= 0]
        if name not in _EDGE_OPS and any(t.type == fb.TensorType.FLOAT32 for t in tensors):
            float_ops.append(name)
    return Inventory(
        op_counts=dict(sorted(counts.items())),
        inputs=tuple(_edge(sg.tensors[i]) for i in sg.inputs),
        outputs=tuple(_edge(sg.tensors[i]) for i in sg.outputs),
        float_ops=tuple(float_ops),
    )


def _opcode(model: fb.ModelT, code: int) -> int:
    for i, oc in enumerate(model.operatorCodes):
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code:
            return i
    oc = fb.OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 2  # version 2: int8
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _float_twin(model: fb.ModelT, sg: fb.SubGraphT, index: int) -> int:
    src = sg.tensors[index]
    t = fb.TensorT()
    t.shape = [int(v) for v in src.shape]
    t.shapeSignature = None if src.shapeSignature is None else [int(v) for v in src.shapeSignature]
    t.type = fb.TensorType.FLOAT32
    t.name = (src.name.decode() if isinstance(src.name, bytes) else str(src.name)) + "_float"
    t.hasRank = src.hasRank
    model.buffers.append(fb.BufferT())
    t.buffer = len(model.buffers) - 1
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def _edge_op(opcode: int, src: int, dst: int, options_type: int, options: object) -> fb.OperatorT:
    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, [src], [dst]
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def float_edges(buf: bytes) -> bytes:
    """The same model with float32 inputs and outputs; integer edges get QUANTIZE/DEQUANTIZE."""
    model = _model(buf)
    sg = model.subgraphs[0]
    quant, dequant = _opcode(model, fb.BuiltinOperator.QUANTIZE), _opcode(model, fb.BuiltinOperator.DEQUANTIZE)
    remap: dict[int, int] = {}
    head: list[fb.OperatorT] = []
    tail: list[fb.OperatorT] = []
    sg.inputs, sg.outputs = [int(i) for i in sg.inputs], [int(i) for i in sg.outputs]
    for pos, idx in enumerate(sg.inputs):
        if sg.tensors[idx].type == fb.TensorType.FLOAT32:
            continue
        remap[idx] = sg.inputs[pos] = _float_twin(model, sg, idx)
        head.append(_edge_op(quant, remap[idx], idx, fb.BuiltinOptions.QuantizeOptions, fb.QuantizeOptionsT()))
    for pos, idx in enumerate(sg.outputs):
        if sg.tensors[idx].type == fb.TensorType.FLOAT32:
            continue
        remap[idx] = sg.outputs[pos] = _float_twin(model, sg, idx)
        tail.append(_edge_op(dequant, idx, remap[idx], fb.BuiltinOptions.DequantizeOptions, fb.DequantizeOptionsT()))
    sg.operators = head + list(sg.operators) + tail
    for sig in model.signatureDefs or []:
        for tm in list(sig.inputs or []) + list(sig.outputs or []):
            tm.tensorIndex = remap.get(tm.tensorIndex, tm.tensorIndex)
    builder = flatbuffers.Builder(len(buf) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


#: Ops whose 16x8 kernels (int16 input, int8 weights) take an int64 bias (DEPTHWISE_CONV_2D takes nothing else).
_BIASED_OPS = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "TRANSPOSE_CONV": 3}


def _pack(model: fb.ModelT, size_hint: int) -> bytes:
    builder = flatbuffers.Builder(size_hint + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def widen_16x8_biases(buf: bytes) -> bytes:
    """The same model with the int32 bias of every conv/fully-connected op on int16 input stored as int64.

    litert-torch writes int32 biases; TFLite's 16x8 kernels want int64 ones (same values, same scale).
    Returns ``buf`` unchanged when no op has int16 input.
    """
    import numpy as np

    model = _model(buf)
    sg = model.subgraphs[0]
    changed = False
    for op in sg.operators:
        slot = _BIASED_OPS.get(_op_name(model, op))
        inputs = list(op.inputs)
        if slot is None or len(inputs) <= slot or inputs[slot] < 0 or sg.tensors[inputs[0]].type != fb.TensorType.INT16:
            continue
        bias = sg.tensors[inputs[slot]]
        if bias.type != fb.TensorType.INT32:
            continue
        data = np.frombuffer(bytes(bytearray(model.buffers[bias.buffer].data)), dtype="<i4").astype("<i8")
        new = fb.BufferT()
        new.data = np.frombuffer(data.tobytes(), dtype=np.uint8)
        model.buffers.append(new)
        bias.buffer, bias.type = len(model.buffers) - 1, fb.TensorType.INT64
        changed = True
    return _pack(model, len(buf) * 2) if changed else buf
