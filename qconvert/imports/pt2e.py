"""torchao PT2E: a ``prepare_qat_pt2e`` model, or a ``convert_pt2e`` Q/DQ graph (``--model file.pt2``).

The Q/DQ graph is taken as it is: a prepared QAT model is first converted by torchao's own
``convert_pt2e`` (which folds BatchNorm into the convolutions as it always does), then every
quantize -> dequantize pair on an activation and every dequantized weight is read as a grid
and replaced by a tap on the float tensor. Which tensors carry a grid, with which scheme, is
the user's; each target then checks that scheme against its constraints (refusing, or adapting
per ``on_unsupported``, naming the layer).
Refused: quantize ops other than the ``quantized_decomposed`` per-tensor and per-channel ones
(e.g. affine-quantized tensor subclasses) are left in the graph and reported.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.fx import GraphModule, Node

from qconvert.core.graph import attr_of
from qconvert.imports.source import SourceModel, TapBook
from qconvert.imports.types import Grid, Tool

__all__ = ["TOOL", "detect", "open_source"]

TOOL: Tool = "torchao PT2E"
_qd = torch.ops.quantized_decomposed
_Q = {_qd.quantize_per_tensor.default, _qd.quantize_per_tensor.tensor, _qd.quantize_per_channel.default}
_DQ = {_qd.dequantize_per_tensor.default, _qd.dequantize_per_tensor.tensor, _qd.dequantize_per_channel.default}


def _fake_quants(model: nn.Module) -> list[nn.Module]:
    from torchao.quantization.pt2e.fake_quantize import FakeQuantizeBase

    return [m for m in model.modules() if isinstance(m, FakeQuantizeBase)]


def detect(model: nn.Module) -> bool:
    if not isinstance(model, GraphModule):
        return False
    if any(n.op == "call_function" and n.target in _DQ for n in model.graph.nodes):
        return True
    return any(type(m).__module__.startswith("torchao.") for m in model.modules()) and bool(_fake_quants(model))


def open_source(model: nn.Module) -> SourceModel:
    assert isinstance(model, GraphModule)
    reference = model
    if _fake_quants(model):
        reference = _prepared_to_eval(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

            qdq = convert_pt2e(copy.deepcopy(reference), fold_quantize=True)
    else:
        qdq = copy.deepcopy(model)
    book = TapBook(TOOL)
    _taps_for_qdq(qdq, book)
    return SourceModel(TOOL, reference, qdq, book.records(), tuple(book.notes), graph_ready=True)


def _prepared_to_eval(model: GraphModule) -> GraphModule:
    from torchao.quantization.pt2e import disable_observer, move_exported_model_to_eval

    model = move_exported_model_to_eval(model)
    model.apply(disable_observer)
    return model


def _value(gm: GraphModule, arg: object) -> torch.Tensor:
    if isinstance(arg, Node):
        return attr_of(gm, arg.target).detach()
    return torch.tensor(arg)


def _grid(gm: GraphModule, dq: Node) -> Grid:
    if dq.target == _qd.dequantize_per_channel.default:
        _, scale, zp, axis, qmin, qmax = dq.args[:6]
        s, z = _value(gm, scale).reshape(-1), _value(gm, zp).reshape(-1)
        return Grid(tuple(s.double().tolist()), tuple(int(v) for v in z.round().tolist()), int(qmin), int(qmax), int(axis))  # type: ignore[arg-type]  # ints in the op schema
    _, scale, zp, qmin, qmax = dq.args[:5]
    return Grid((float(_value(gm, scale).reshape(-1)[0]),), (int(_value(gm, zp).reshape(-1)[0]),), int(qmin), int(qmax))  # type: ignore[arg-type]  # ints in the op schema


def _taps_for_qdq(gm: GraphModule, book: TapBook) -> None:
    """Replace each Q -> DQ pair (an activation) and each DQ of a stored integer weight by a tap."""
    g = gm.graph
    for n in g.nodes:  # the source quantizer's annotations would mix with the build's own
        n.meta.pop("quantization_annotation", None)
    for dq in [n for n in g.nodes if n.op == "call_function" and n.target in _DQ]:
        src = dq.args[0]
        grid = _grid(gm, dq)
        if isinstance(src, Node) and src.op == "call_function" and src.target in _Q:
            tensor, role, where = src.args[0], "activation", f"{src.name} -> {dq.name}"
        elif isinstance(src, Node) and src.op == "get_attr":
            tensor, role, where = _float_weight(gm, src, dq), "weight", f"{src.target} (dequantized by {dq.name})"
        else:
            book.notes.append(f"{dq.name}: dequantizes a tensor that is neither quantized in the graph nor stored; left as is")
            continue
        tap = book.tap(grid, where, role)  # type: ignore[arg-type]  # role: "weight" or "activation" by construction
        assert tap is not None
        with g.inserting_before(dq):
            node = g.call_function(torch.ops.qconvert.tap.default, (tensor, tap.index))
        node.meta["val"] = dq.meta.get("val")
        dq.replace_all_uses_with(node)
    g.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()


def _float_weight(gm: GraphModule, stored: Node, dq: Node) -> Node:
    """A float parameter holding the dequantized weight (the exact grid values), read by a get_attr."""
    with torch.no_grad():
        args = [_value(gm, a) if isinstance(a, Node) else a for a in dq.args]
        w = dq.target(*args).detach().clone()  # type: ignore[operator]  # fx types a call_function target as str too
    name = f"{str(stored.target).replace('.', '_')}_float"
    gm.register_parameter(name, nn.Parameter(w, requires_grad=False))
    with gm.graph.inserting_before(dq):
        node = gm.graph.get_attr(name)
    node.meta["val"] = w
    node.meta.update({k: v for k, v in dq.meta.items() if k in ("nn_module_stack", "stack_trace")})
    return node
