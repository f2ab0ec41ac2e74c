"""Dynamic Linear in the ONNX form onnxruntime runs in int8.

The core marks a dynamic Linear as ``choose_qparams -> quantize -> dequantize`` on
its input and an int8 weight behind ``dequantize_per_channel``. Exported as is,
onnxruntime would run the MatMul in float. Instead each such Linear is replaced by
one custom op whose ONNX translation is the form onnxruntime's own
``quantize_dynamic`` writes and fuses into ``DynamicQuantizeMatMul``:
``DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul(x_scale * w_scale) -> Add(bias)``.

DynamicQuantizeLinear is uint8 over [min(x, 0), max(x, 0)], the same range as the
core's 8-bit ``choose_qparams``; the torch implementation below computes the
simulation's values, so export-time checks see the same numbers.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch.fx import GraphModule, Node

from qconvert.targets import arg_float, arg_int, arg_node, attr_of

__all__ = ["dynamic_linear_count", "replace_dynamic_linears", "translation_table"]

_qd = torch.ops.quantized_decomposed
_DQ_DYN, _DQ_CH, _DQ = _qd.dequantize_per_tensor.tensor, _qd.dequantize_per_channel.default, _qd.dequantize_per_tensor.default


@torch.library.custom_op("qconvert_onnx::dynamic_linear", mutates_args=())
def dynamic_linear(x: torch.Tensor, w_t: torch.Tensor, w_scale: torch.Tensor, w_zero_point: torch.Tensor,
                   bias: torch.Tensor) -> torch.Tensor:
    """x @ dequantize(w_t) + bias with x quantized per call to uint8 (w_t: int8 [in, out])."""
    scale, zp = _qd.choose_qparams.tensor(x, 0, 255, torch.finfo(torch.float32).eps, torch.uint8)
    q = _qd.quantize_per_tensor.tensor(x, scale, zp, 0, 255, torch.uint8)
    xd = _qd.dequantize_per_tensor.tensor(q, scale, zp, 0, 255, torch.uint8)
    w = (w_t.float() - w_zero_point.float()) * w_scale
    return xd @ w + bias


@dynamic_linear.register_fake
def _(x: torch.Tensor, w_t: torch.Tensor, w_scale: torch.Tensor, w_zero_point: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], w_t.shape[1]))


def _onnx_dynamic_linear(x: Any, w_t: Any, w_scale: Any, w_zero_point: Any, bias: Any) -> Any:
    from onnxscript import FLOAT
    from onnxscript import opset18 as op

    xq, x_scale, x_zero_point = op.DynamicQuantizeLinear(x)
    acc = op.MatMulInteger(xq, w_t, x_zero_point, w_zero_point)
    return op.Add(op.Mul(op.Cast(acc, to=FLOAT.dtype), op.Mul(x_scale, w_scale)), bias)


def translation_table() -> dict[Any, Any]:
    """``custom_translation_table`` for torch.onnx.export."""
    return {torch.ops.qconvert_onnx.dynamic_linear.default: _onnx_dynamic_linear}


def dynamic_linear_count(gm: GraphModule) -> int:
    return sum(1 for n in gm.graph.nodes if n.target == torch.ops.qconvert_onnx.dynamic_linear.default)


def replace_dynamic_linears(gm: GraphModule) -> GraphModule:
    """A copy of ``gm`` with every dynamic Linear as one ``qconvert_onnx::dynamic_linear`` call
    (``gm`` itself, untouched, when it has none)."""
    if not any(_is_dynamic_linear(n) for n in gm.graph.nodes):
        return gm
    gm = copy.deepcopy(gm)
    for i, n in enumerate([n for n in gm.graph.nodes if _is_dynamic_linear(n)]):
        x = n.args[0].args[0].args[0]  # dq(q(x, choose_qparams(x)))
        w_t, w_scale, w_zp = _weight(gm, n.args[1])
        bias = attr_of(gm, n.args[2].target) if len(n.args) > 2 and isinstance(n.args[2], Node) else torch.zeros(w_t.shape[1])
        consts = []
        for suffix, value in (("w_t", w_t), ("w_scale", w_scale), ("w_zp", w_zp), ("bias", bias.detach().float())):
            name = f"_qconvert_dynamic_linear_{i}_{suffix}"
            gm.register_buffer(name, value)
            with gm.graph.inserting_before(n):
                consts.append(gm.graph.get_attr(name))
        with gm.graph.inserting_before(n):
            new = gm.graph.call_function(torch.ops.qconvert_onnx.dynamic_linear.default, (x, *consts))
        new.meta = dict(n.meta)
        n.replace_all_uses_with(new)
        gm.graph.erase_node(n)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


def _is_dynamic_linear(n: Node) -> bool:
    if n.target != torch.ops.aten.linear.default or getattr(n.args[0], "target", None) != _DQ_DYN:
        return False
    w = n.args[1]
    return isinstance(w, Node) and w.target in (_DQ_CH, _DQ) and isinstance(w.args[0], Node) and w.args[0].op == "get_attr"


def _weight(gm: GraphModule, dq: Node) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """int8 weight transposed to [in, out], with per-output scales and zero points (MatMulInteger's B)."""
    codes = attr_of(gm, arg_node(dq, 0).target)
    out = codes.shape[0]
    if dq.target == _DQ_CH:
        scale, zp = _value(gm, dq.args[1]), _value(gm, dq.args[2])
    else:
        scale, zp = torch.full((out,), arg_float(dq, 1)), torch.full((out,), arg_int(dq, 2))
    return codes.t().contiguous(), scale.float().reshape(out), zp.to(codes.dtype).reshape(out)


def _value(gm: GraphModule, a: Any) -> torch.Tensor:
    return attr_of(gm, a.target) if isinstance(a, Node) else torch.as_tensor(a)

