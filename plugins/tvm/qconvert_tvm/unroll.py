"""ONNX ``LSTM`` nodes written out as the ops they compute, for TVM's Relax frontend (it has no LSTM converter).

Each LSTM with a static sequence length becomes, per direction: one MatMul of the whole sequence by
``W`` plus ``Wb``, then per step ``Gather`` of that step, ``MatMul`` of the previous hidden state by
``R`` plus ``Rb``, the four gates (ONNX order i, o, f, c) and the state update

    c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)

in the order PyTorch's ``nn.LSTM`` adds and multiplies them (x W^T + b_ih, then + (h R^T + b_hh)).
The math is the node's, term for term; only float summation order inside a matmul may differ, as
between any two runtimes. Only what the LSTM spec's defaults compute is rewritten: default
activations, no ``clip``, ``input_forget`` 0, ``layout`` 0, no ``sequence_lens`` and no peepholes.
Any other LSTM is left as it is (TVM then refuses it by name).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

__all__ = ["unroll_lstms"]

_DEFAULT_ACTIVATIONS = ("Sigmoid", "Tanh", "Tanh")


@dataclass
class _Emitter:
    """Collects the replacement nodes and constants of one LSTM, each name prefixed to stay unique."""

    prefix: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    constants: list[onnx.TensorProto] = field(default_factory=list)
    count: int = 0

    def name(self, what: str) -> str:
        self.count += 1
        return f"{self.prefix}/{what}_{self.count}"

    def const(self, value: np.ndarray, what: str = "const") -> str:
        name = self.name(what)
        self.constants.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], what: str = "", **attrs: Any) -> str:
        out = self.name(what or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def ops(self, op_type: str, inputs: list[str], n: int, **attrs: Any) -> list[str]:
        outs = [self.name(op_type.lower()) for _ in range(n)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=outs[0], **attrs))
        return outs


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _dims(shapes: dict[str, list[int | None]], name: str) -> list[int | None] | None:
    return shapes.get(name)


def _rewritable(node: onnx.NodeProto, shapes: dict[str, list[int | None]]) -> tuple[int, int] | None:
    """(sequence length, batch) where ``node`` computes only the default LSTM and both are static, else None."""
    a = _attrs(node)
    ins = list(node.input) + [""] * (8 - len(node.input))
    acts = a.get("activations")
    directions = 2 if a.get("direction", b"forward") == b"bidirectional" else 1
    if acts is not None and tuple(x.decode() if isinstance(x, bytes) else x for x in acts) != _DEFAULT_ACTIVATIONS * directions:
        return None
    if "clip" in a or a.get("input_forget", 0) or a.get("layout", 0) or ins[4] or ins[7]:
        return None
    x = _dims(shapes, ins[0])
    if not x or len(x) != 3 or not x[0]:
        return None
    batch = x[1]
    if not batch:  # the batch is also the initial state's second dim
        states = [_dims(shapes, n) for n in (ins[5], ins[6]) if n]
        batch = next((s[1] for s in states if s and len(s) == 3 and s[1]), None)
    return (x[0], batch) if batch else None


def _direction(e: _Emitter, ins: list[str], d: int, steps: int, batch: int, hidden: int,
               reverse: bool) -> tuple[list[str], str, str]:
    """One direction's hidden states per step (in sequence order), last hidden and last cell state."""
    pick = e.const(np.array([d], np.int64), "dir")
    w = e.op("Transpose", [e.op("Squeeze", [e.op("Gather", [ins[1], pick], axis=0), e.const(np.array([0], np.int64))])], perm=[1, 0])
    r = e.op("Transpose", [e.op("Squeeze", [e.op("Gather", [ins[2], pick], axis=0), e.const(np.array([0], np.int64))])], perm=[1, 0])
    xw = e.op("MatMul", [ins[0], w], "xw")  # [steps, batch, 4 hidden]
    bias_r = None
    if ins[3]:
        wb, rb = e.ops("Split", [e.op("Squeeze", [e.op("Gather", [ins[3], pick], axis=0), e.const(np.array([0], np.int64))]),
                                 e.const(np.array([4 * hidden, 4 * hidden], np.int64))], 2, axis=0)
        xw = e.op("Add", [xw, wb], "xw_b")
        bias_r = rb

    def state(i: int) -> str:
        if ins[i]:
            return e.op("Squeeze", [e.op("Gather", [ins[i], pick], axis=0), e.const(np.array([0], np.int64))])
        return e.const(np.zeros((batch, hidden), np.float32), "zeros")

    h, c = state(5), state(6)
    split = e.const(np.array([hidden] * 4, np.int64), "split")
    hs: dict[int, str] = {}
    for t in (reversed(range(steps)) if reverse else range(steps)):
        hr = e.op("MatMul", [h, r], "hr")
        if bias_r is not None:
            hr = e.op("Add", [hr, bias_r], "hr_b")
        gates = e.op("Add", [e.op("Gather", [xw, e.const(np.array(t, np.int64), "t")], axis=0), hr], "gates")
        gi, go, gf, gc = e.ops("Split", [gates, split], 4, axis=1)
        i, o, f, g = e.op("Sigmoid", [gi]), e.op("Sigmoid", [go]), e.op("Sigmoid", [gf]), e.op("Tanh", [gc])
        c = e.op("Add", [e.op("Mul", [f, c]), e.op("Mul", [i, g])], "c")
        h = e.op("Mul", [o, e.op("Tanh", [c])], "h")
        hs[t] = h
    return [hs[t] for t in range(steps)], h, c


def _unroll(node: onnx.NodeProto, index: int, steps: int, batch: int) -> _Emitter:
    a = _attrs(node)
    hidden = int(a["hidden_size"])
    direction = a.get("direction", b"forward")
    ins = list(node.input) + [""] * (8 - len(node.input))
    e = _Emitter(f"{node.name or 'LSTM'}_{index}_unrolled")
    plans = [(0, direction == b"reverse")] if direction != b"bidirectional" else [(0, False), (1, True)]
    runs = [_direction(e, ins, d, steps, batch, hidden, rev) for d, rev in plans]
    outs = list(node.output) + [""] * (3 - len(node.output))
    axes01, axes0 = e.const(np.array([0, 1], np.int64), "axes"), e.const(np.array([0], np.int64), "axes")
    if outs[0]:
        per_dir = [e.op("Concat", [e.op("Unsqueeze", [h, axes01]) for h in hs], axis=0) for hs, _, _ in runs]
        e.nodes.append(helper.make_node("Concat", per_dir, [outs[0]], name=e.name("y"), axis=1))
    for k in (1, 2):
        if outs[k]:
            finals = [e.op("Unsqueeze", [run[1] if k == 1 else run[2], axes0]) for run in runs]
            e.nodes.append(helper.make_node("Concat", finals, [outs[k]], name=e.name("y_state"), axis=0))
    return e


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    out: dict[str, list[int | None]] = {}
    for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape"):
            out[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
    for init in inferred.graph.initializer:
        out[init.name] = list(init.dims)
    return out


def unroll_lstms(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` with every rewritable LSTM unrolled, and how many were (0: ``model`` itself)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13 or not any(n.op_type == "LSTM" for n in model.graph.node):  # Split/Squeeze take inputs from 13 on
        return model, 0
    shapes = _static_shapes(model)
    nodes: list[onnx.NodeProto] = []
    constants: list[onnx.TensorProto] = []
    done = 0
    for i, node in enumerate(model.graph.node):
        plan = _rewritable(node, shapes) if node.op_type == "LSTM" and node.domain in ("", "ai.onnx") else None
        if plan is None:
            nodes.append(node)
            continue
        e = _unroll(node, i, *plan)
        nodes += e.nodes
        constants += e.constants
        done += 1
    if not done:
        return model, 0
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(constants)
    return out, done
