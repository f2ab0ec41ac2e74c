"""Dynamic quantization (recipe ``dynamic``): which ops take it, and how the graph says so.

A dynamic Linear keeps float activations until run time: its input gets torchao's
dynamic form (``choose_qparams`` per batch, then quantize/dequantize), its weight
is int8 as in static quantization, its bias and output stay float. LSTM, GRU and
Embedding get int8 weights only: runtimes quantize their activations inside their
own kernels (fbgemm's LSTM quantizes the input sequence once and each hidden state
per step), which a Q/DQ graph cannot express, so the simulation runs those
activations in float and targets declare the tolerance this leaves.

Everything else in a dynamic layer stays float; a weighted op the target cannot
run dynamically (a convolution, or an LSTM on a target without one) is named in a
warning.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch.fx import Node
from torchao.quantization.pt2e.observer import PlaceholderObserver
from torchao.quantization.pt2e.quantizer import QuantizationSpec

from qconvert.core.graph import OpKind, is_float_tensor, module_of, op_kind
from qconvert.core.plan import TensorQuant
from qconvert.core.policy import QuantPolicy
from qconvert.core.scheme import int_range

__all__ = ["DYNAMIC_OPS", "Annotator", "annotate_dynamic", "dynamic_op", "dynamic_spec"]

aten = torch.ops.aten

#: The ops dynamic quantization covers, by the name targets use in ``QuantConstraints.dynamic_ops``.
DYNAMIC_OPS: dict[Any, str] = {
    aten.linear.default: "linear",
    aten.lstm.input: "lstm",
    aten.gru.input: "gru",
    aten.embedding.default: "embedding",
}


class Annotator(Protocol):
    """What dynamic annotation uses of the quantizer (``qconvert.core.annotate.QConvertQuantizer``),
    declared here so that this module does not import the quantizer that calls it."""

    policy: QuantPolicy
    decisions: dict[str, TensorQuant]

    def make_spec(self, tq: TensorQuant) -> QuantizationSpec: ...

    def _set(self, node: Node, inputs: dict[Node, Any], output: Any) -> None: ...


def dynamic_op(node: Node) -> str | None:
    """The dynamic op name of ``node``; "conv" for other weighted ops; None for the rest."""
    if node.op != "call_function":
        return None
    if node.target in DYNAMIC_OPS:
        return DYNAMIC_OPS[node.target]
    return "conv" if op_kind(node) == OpKind.WEIGHTED else None


def dynamic_spec(tq: TensorQuant) -> QuantizationSpec:
    """torchao's dynamic activation spec: convert_pt2e turns it into choose_qparams + Q/DQ."""
    rng = int_range(tq.scheme)
    return QuantizationSpec(
        dtype=rng.dtype, quant_min=rng.qmin, quant_max=rng.qmax, qscheme=torch.per_tensor_affine, is_dynamic=True,
        observer_or_fake_quant_ctr=PlaceholderObserver.with_args(
            dtype=rng.dtype, quant_min=rng.qmin, quant_max=rng.qmax, is_dynamic=True,
        ),
    )


def annotate_dynamic(q: Annotator, node: Node) -> None:
    """Annotate one node of a dynamic layer (a no-op for ops dynamic quantization leaves float)."""
    op = dynamic_op(node)
    module = module_of(node)
    if op is None or q.policy.excluded(module):
        return
    if not q.policy.dynamic_supported(op):
        q.policy.keep_float(module or node.name, op)
        return
    if op == "linear":
        _linear(q, node, module)
    elif op == "embedding":
        _weights(q, node, module, [node.args[0]])
    else:
        _weights(q, node, module, _rnn_weights(node))


def _linear(q: Annotator, node: Node, module: str) -> None:
    x, w = node.args[0], node.args[1]
    if not (isinstance(x, Node) and is_float_tensor(x) and isinstance(w, Node)):
        return
    tq = q.policy.dynamic_activation(f"{node.name}.input", module)
    q.decisions[tq.key] = tq
    q._set(node, {x: dynamic_spec(tq)}, None)
    _weights(q, node, module, [w])


def _weights(q: Annotator, node: Node, module: str, weights: list[Any]) -> None:
    inputs: dict[Node, Any] = {}
    for w in weights:
        if not (isinstance(w, Node) and is_float_tensor(w)):
            continue
        key = w.target if w.op == "get_attr" else f"{module or node.name}.{w.name}"
        wq = q.policy.weight(str(key), module, ch_axis=0)
        q.decisions[wq.key] = wq
        inputs[w] = q.make_spec(wq)
    if inputs:
        q._set(node, inputs, None)


def _rnn_weights(node: Node) -> list[Any]:
    """The input-hidden and hidden-hidden matrices of aten.lstm/gru's flat parameter list
    (per layer and direction: w_ih, w_hh, then b_ih, b_hh when it has biases)."""
    params = list(node.args[2])  # type: ignore[arg-type]  # a list of weight nodes in the aten.lstm/gru schema
    stride = 4 if node.args[3] else 2
    return [p for i, p in enumerate(params) if i % stride < 2]
