"""Compile the core's Q/DQ ``GraphModule`` into an ``IntSim`` program (the only torch use).

Each FX node becomes one step with its constants as numpy arrays, so running
the program needs numpy alone. An op without an exact integer meaning raises
``UnsupportedGraph`` naming the node, instead of simulating something else.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.ao.quantization.fx._decomposed  # registers the quantize/dequantize ops of the graph
from torch.fx import GraphModule, Node

from qconvert.targets import attr_of
from qconvert_tidl import intsim as S

__all__ = ["compile_graph"]

aten = torch.ops.aten
qd = torch.ops.quantized_decomposed


def _shape_op(fn: Callable[..., np.ndarray]) -> Callable[..., Any]:
    def run(sim: S.IntSim, name: str, x: S.Fixed, *args: Any) -> S.Fixed:
        return S.op_reshape_like(lambda a: fn(a, *args))(sim, name, x)

    return run


def _view(a: np.ndarray, shape: Any) -> np.ndarray:
    return a.reshape([int(s) for s in shape])


def _flatten(a: np.ndarray, start: int = 0, end: int = -1) -> np.ndarray:
    end = end % a.ndim
    return a.reshape(a.shape[:start] + (-1,) + a.shape[end + 1 :])


def _squeeze(a: np.ndarray, dims: Any = None) -> np.ndarray:
    if dims is None:
        return np.squeeze(a)
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    return np.squeeze(a, axis=tuple(d for d in dims if a.shape[d] == 1))


def _adaptive_avg(sim: S.IntSim, name: str, x: S.Fixed, size: Any) -> S.Fixed:
    if [int(s) for s in size] != [1, 1]:
        raise S.UnsupportedGraph(f"{name}: adaptive_avg_pool2d to {list(size)} (only global average is simulated)")
    return S.op_mean(sim, name, x, (2, 3), True)


def _mean(sim: S.IntSim, name: str, x: S.Fixed, dims: Any, keepdim: bool = False) -> S.Fixed:
    dims = (dims,) if isinstance(dims, int) else tuple(int(d) % x.ints.ndim for d in dims)
    return S.op_mean(sim, name, x, dims, keepdim)


def _hardtanh(sim: S.IntSim, name: str, x: S.Fixed, lo: float = -1.0, hi: float = 1.0) -> S.Fixed:
    return S.op_clamp(sim, name, x, lo, hi)


def _relu6(sim: S.IntSim, name: str, x: S.Fixed) -> S.Fixed:
    return S.op_clamp(sim, name, x, 0.0, 6.0)


def _sym_size(sim: S.IntSim, name: str, x: Any, dim: int) -> int:
    a = x.ints if isinstance(x, S.Fixed) else (x.q if isinstance(x, S.QValue) else np.asarray(x))
    return int(a.shape[dim])


def _quantize(sim: S.IntSim, name: str, x: Any, scale: float, zp: int, qmin: int, qmax: int, dtype: Any = None) -> S.QValue:
    return S.op_quantize(sim, name, x, scale, zp, qmin, qmax)


def _dequantize(sim: S.IntSim, name: str, q: Any, scale: Any, zp: Any, qmin: int = 0, qmax: int = 0, dtype: Any = None) -> S.Fixed:
    return S.op_dequantize(sim, name, q, scale, zp)


def _dequantize_pc(sim: S.IntSim, name: str, q: Any, scale: Any, zp: Any, axis: int, *rest: Any) -> S.Fixed:
    return S.op_dequantize(sim, name, q, scale, zp, axis)


_OPS: dict[Any, Callable[..., Any]] = {
    qd.quantize_per_tensor.default: _quantize,
    qd.dequantize_per_tensor.default: _dequantize,
    qd.dequantize_per_channel.default: _dequantize_pc,
    aten.conv2d.default: S.op_conv2d,
    aten.linear.default: S.op_linear,
    aten.relu.default: S.op_relu,
    aten.relu_.default: S.op_relu,
    aten.hardtanh.default: _hardtanh,
    aten.hardtanh_.default: _hardtanh,
    aten.relu6.default: _relu6,
    aten.clamp.default: S.op_clamp,
    aten.add.Tensor: S.op_add,
    aten.add_.Tensor: S.op_add,
    aten.mul.Tensor: S.op_mul,
    aten.mul_.Tensor: S.op_mul,
    aten.adaptive_avg_pool2d.default: _adaptive_avg,
    aten.mean.dim: _mean,
    aten.max_pool2d.default: S.op_max_pool2d,
    aten.cat.default: S.op_cat,
    aten.concat.default: S.op_cat,
    aten.flatten.using_ints: _shape_op(_flatten),
    aten.view.default: _shape_op(_view),
    aten.reshape.default: _shape_op(_view),
    aten.permute.default: _shape_op(lambda a, dims: np.transpose(a, [int(d) for d in dims])),
    aten.transpose.int: _shape_op(lambda a, d0, d1: np.swapaxes(a, d0, d1)),
    aten.squeeze.dim: _shape_op(_squeeze),
    aten.squeeze.dims: _shape_op(_squeeze),
    aten.unsqueeze.default: _shape_op(lambda a, d: np.expand_dims(a, d % (a.ndim + 1))),
    aten.contiguous.default: S.op_identity,
    aten.clone.default: S.op_identity,
    aten.dropout.default: lambda sim, name, x, p=0.5, train=False: x,
    aten.sym_size.int: _sym_size,
    operator.getitem: lambda sim, name, x, i: x[i],
}




def _arg(a: Any, gm: GraphModule) -> Any:
    if isinstance(a, Node):
        if a.op == "get_attr":
            value = attr_of(gm, a.target)
            return value.detach().numpy().astype(np.int64) if not value.is_floating_point() else value.detach().double().numpy()
        return S.Ref(a.name)
    if isinstance(a, (list, tuple)):
        return type(a)(_arg(x, gm) for x in a)
    if isinstance(a, torch.dtype):
        return str(a)
    return a


def compile_graph(gm: GraphModule, rounding: S.Rounding = "tidl") -> S.IntSim:
    """The integer program of a Q/DQ graph: one ``Step`` per op, run with ``rounding``.

    Raises:
        UnsupportedGraph: an op of the graph has no exact integer meaning here.
    """
    inputs: list[str] = []
    steps: list[S.Step] = []
    outputs: tuple[str, ...] = ()
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            inputs.append(n.name)
        elif n.op == "get_attr" or (n.op == "call_module" and str(n.target).startswith("_guards")):
            continue
        elif n.op == "call_function":
            fn = _OPS.get(n.target)
            if fn is None:
                raise S.UnsupportedGraph(f"node '{n.name}': op {n.target} has no integer simulation")
            steps.append(S.Step(n.name, fn, tuple(_arg(a, gm) for a in n.args), {k: _arg(v, gm) for k, v in n.kwargs.items()}))
        elif n.op == "output":
            outs = n.args[0] if isinstance(n.args[0], (list, tuple)) else (n.args[0],)
            outputs = tuple(o.name for o in outs)
        else:
            raise S.UnsupportedGraph(f"node '{n.name}': {n.op} {n.target} has no integer simulation")
    return S.IntSim(tuple(inputs), steps, outputs, rounding)
