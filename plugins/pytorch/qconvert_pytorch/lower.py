"""Lower the core's Q/DQ graph to torch.ao quantized modules, for TorchScript.

The baseline is correct by construction: every quantize node becomes a quantized
tensor (``torch.quantize_per_tensor``) and every dequantize a ``.dequantize()``,
which is what the simulation computes. Patterns with integer kernels then replace
their float compute: conv/linear (+ReLU) between a dequantize and a quantize become
quantized Conv/Linear modules, add (+ReLU) becomes ``quantized::add``, shape-only
ops run on the quantized tensor, and the dynamic forms become torch.ao's dynamic
Linear/LSTM/GRU and weight-only Embedding. The modules are packed for the engine
active while lowering; TorchScript stores the weights unpacked and packs them again
for the engine active when the file is loaded.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import fx, nn
from torch.fx import GraphModule, Node

from qconvert.targets import attr_of
from qconvert_pytorch import modules as qm

__all__ = ["LoweringError", "lower_to_quantized_modules"]

aten = torch.ops.aten
_qd = torch.ops.quantized_decomposed
Q, DQ, DQ_CH = _qd.quantize_per_tensor.default, _qd.dequantize_per_tensor.default, _qd.dequantize_per_channel.default
CHOOSE, Q_DYN, DQ_DYN = _qd.choose_qparams.tensor, _qd.quantize_per_tensor.tensor, _qd.dequantize_per_tensor.tensor
_CONV = {aten.conv1d.default: 1, aten.conv2d.default: 2}
_RELU = {aten.relu.default, aten.relu_.default}
_ADD = {aten.add.Tensor, aten.add_.Tensor}
#: Ops that only move data: they run on the quantized tensor and keep its parameters.
_SHAPE = {aten.max_pool2d.default, aten.flatten.using_ints, aten.view.default, aten.reshape.default, aten.permute.default,
          aten.transpose.int, aten.squeeze.dim, aten.unsqueeze.default, aten.contiguous.default}
_DYNAMIC_NODES = {CHOOSE, Q_DYN, DQ_DYN}


class LoweringError(RuntimeError):
    """A node of the Q/DQ graph this lowering has no form for (a bug or an unsupported op)."""


@dataclass(frozen=True)
class _Group:
    """compute [-> relu] -> quantize, emitted as one quantized op at the quantize node."""

    compute: Node
    relu: Node | None
    quant: Node


def lower_to_quantized_modules(gm: GraphModule, input_names: tuple[str, ...]) -> GraphModule:
    """A GraphModule of quantized modules and plain aten calls, scriptable with ``torch.jit.script``."""
    return _Lowerer(gm, input_names).run()


class _Lowerer:
    def __init__(self, gm: GraphModule, input_names: tuple[str, ...]) -> None:
        self.src, self.input_names = gm, input_names
        self.g = fx.Graph()
        self.root = nn.Module()
        self.env: dict[Node, Node] = {}
        self.groups = _find_groups(gm.graph)
        self.in_group = {n for grp in self.groups.values() for n in (grp.compute, grp.relu) if n is not None}
        self.names: set[str] = set()

    def run(self) -> GraphModule:
        placeholders = 0
        for n in self.src.graph.nodes:
            if n.op == "placeholder":
                name = self.input_names[placeholders] if placeholders < len(self.input_names) else n.name
                self.env[n] = self.g.placeholder(name)
                placeholders += 1
            elif n.op == "get_attr":
                continue  # materialised on first use
            elif n.op == "call_module":
                if n.users:
                    raise LoweringError(f"unexpected module call '{n.target}' in the quantized graph")
            elif n.op == "output":
                outs = [self._val(o) if isinstance(o, Node) else o for o in n.args[0]]
                self.g.output(outs[0] if len(outs) == 1 else tuple(outs))
            else:
                self._call(n)
        out = GraphModule(self.root, self.g)
        out.graph.eliminate_dead_code(is_impure_node=_impure)
        used = {n.target for n in out.graph.nodes if n.op == "get_attr"}
        for name in [b for b, _ in out.named_buffers(recurse=False) if b not in used]:
            delattr(out, name)  # float copies of weights that only quantized modules read
        out.recompile()
        return out

    # -- values ----------------------------------------------------------------

    def _val(self, n: Any) -> Node:
        if n not in self.env:
            if n.op != "get_attr":
                raise LoweringError(f"node '{n.name}' used before it was lowered")
            self.env[n] = self._const(n.name, attr_of(self.src, n.target))
        return self.env[n]

    def _const(self, hint: str, value: torch.Tensor) -> Node:
        name = self._name(hint)
        self.root.register_buffer(name, value.detach().clone())
        return self.g.get_attr(name)

    def _name(self, hint: str) -> str:
        base = re.sub(r"\W", "_", hint).strip("_") or "m"
        name, i = base, 1
        while name in self.names or hasattr(self.root, name):
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def _module(self, hint: str, module: nn.Module, args: tuple[Any, ...]) -> Node:
        name = self._name(hint)
        self.root.add_module(name, module)
        return self.g.call_module(name, args)

    # -- nodes -----------------------------------------------------------------

    def _call(self, n: Any) -> None:
        if n.target == Q:
            self.env[n] = self._emit_group(self.groups[n]) if n in self.groups else self._quantize(n)
        elif n.target in (DQ, DQ_CH):
            src = n.args[0]
            if isinstance(src, Node) and src.op == "get_attr":  # a weight: folded to float for float consumers
                self.env[n] = self._const(f"{src.name}_float", _constant_dequantize(self.src, n))
            else:
                self.env[n] = self.g.call_method("dequantize", (self._val(src),))
        elif n.target in _DYNAMIC_NODES or (n.target is operator.getitem and getattr(n.args[0], "target", None) == CHOOSE):
            return  # consumed by the dynamic op that reads them
        elif n in self.in_group:
            return  # emitted at the group's quantize node
        elif n.target == aten.linear.default and getattr(n.args[0], "target", None) == DQ_DYN:
            self.env[n] = self._dynamic_linear(n)
        elif n.target in (aten.lstm.input, aten.gru.input) and _all_weights_quantized(n):
            self.env[n] = self._dynamic_rnn(n)
        elif n.target == aten.embedding.default and getattr(n.args[0], "target", None) in (DQ, DQ_CH):
            self.env[n] = self._module(f"{n.name}_q", qm.quantized_embedding(_qweight(self.src, n.args[0])), (self._val(n.args[1]),))
        else:
            self.env[n] = self._copy(n)

    def _copy(self, n: Node) -> Node:
        target: Any = n.target.overloadpacket if isinstance(n.target, torch._ops.OpOverload) else n.target
        if any(isinstance(a, Node) and a.target in _DYNAMIC_NODES for a in n.all_input_nodes):
            raise LoweringError(f"'{n.name}' reads a dynamically quantized tensor but is not a dynamic Linear")
        new = self.g.call_function(target, *_map_args(n, self._val))
        new.meta = dict(n.meta)
        return new

    def _quantize(self, n: Any) -> Node:
        x, scale, zp, qmin, qmax, dtype = n.args[:6]
        value = self._val(x)
        info = torch.iinfo(dtype)
        if (qmin, qmax) != (info.min, info.max):  # a narrower range inside int8/uint8 storage saturates first
            lo, hi = (qmin - zp) * scale, (qmax - zp) * scale
            value = self.g.call_function(torch.clamp, (value, float(lo), float(hi)))
        return self.g.call_function(torch.quantize_per_tensor, (value, float(scale), int(zp), _qdtype(dtype)))

    def _emit_group(self, grp: _Group) -> Node:
        c, q = cast(Any, grp.compute), cast(Any, grp.quant)
        scale, zp = float(q.args[1]), int(q.args[2])
        if c.target in _ADD:
            op = torch.ops.quantized.add_relu if grp.relu is not None else torch.ops.quantized.add
            a, b = (self._val(d.args[0]) for d in c.args[:2])
            return self.g.call_function(op, (a, b, scale, zp))
        if c.target in _SHAPE:
            args, kwargs = _map_args(c, self._val)
            x = self._val(c.args[0].args[0])
            return self.g.call_function(c.target.overloadpacket, (x, *args[1:]), kwargs)
        x = self._val(c.args[0].args[0])
        qweight = _qweight(self.src, c.args[1])
        bias = _bias(self.src, c.args[2] if len(c.args) > 2 else None)
        relu = grp.relu is not None
        if c.target == aten.linear.default:
            return self._module(c.name, qm.quantized_linear(qweight, bias, relu, scale, zp), (x,))
        rank = _CONV[c.target]
        stride, padding, dilation, groups = _conv_args(c, rank)
        return self._module(c.name, qm.quantized_conv(rank, qweight, bias, stride, padding, dilation, groups, relu, scale, zp), (x,))

    def _dynamic_linear(self, n: Any) -> Node:
        x = _arg(_arg(_arg(n, 0), 0), 0)  # dq(q(x, choose_qparams(x)))
        bias = _bias(self.src, n.args[2] if len(n.args) > 2 else None)
        return self._module(n.name, qm.dynamic_linear(_qweight(self.src, n.args[1]), bias), (self._val(x),))

    def _dynamic_rnn(self, n: Any) -> Node:
        x, hx, params, has_biases, num_layers, _dropout, _train, bidirectional, batch_first = n.args[:9]
        kind = "lstm" if n.target == aten.lstm.input else "gru"
        stride = 4 if has_biases else 2
        params = list(params)
        qweights = [_qweight(self.src, p) for i, p in enumerate(params) if i % stride < 2]
        if has_biases:
            biases = [attr_of(self.src, p.target) for i, p in enumerate(params) if i % stride >= 2]
        else:
            biases = [torch.zeros(w.shape[0]) for w in qweights]
        module = qm.dynamic_rnn(kind, qweights, biases, int(num_layers), bool(bidirectional), bool(batch_first))
        hidden = [self._val(h) for h in hx] if kind == "lstm" else [self._val(hx)]
        return self._module(n.name, module, (self._val(x), *hidden))


def _find_groups(graph: fx.Graph) -> dict[Node, _Group]:
    """Quantize nodes whose producer (with an optional ReLU) has an integer kernel."""
    groups: dict[Node, _Group] = {}
    for q in graph.nodes:
        if q.target != Q or not _full_range(q):
            continue
        p: Any = q.args[0]
        relu = None
        if isinstance(p, Node) and p.target in _RELU and len(p.users) == 1:
            p, relu = p.args[0], p
        if not isinstance(p, Node) or len(p.users) != 1:
            continue
        if _is_conv_or_linear(p) or (p.target in _ADD and all(_is_act_dq(a) for a in p.args[:2])):
            groups[q] = _Group(p, relu, q)
        elif p.target in _SHAPE and relu is None and _is_act_dq(p.args[0]) and _same_params(p.args[0], q):
            groups[q] = _Group(p, None, q)
    return groups


def _is_conv_or_linear(p: Any) -> bool:
    if p.target not in _CONV and p.target != aten.linear.default:
        return False
    w: Any = p.args[1]
    return _is_act_dq(p.args[0]) and isinstance(w, Node) and w.target in (DQ, DQ_CH) and getattr(w.args[0], "op", None) == "get_attr"


def _is_act_dq(a: Any) -> bool:
    """A dequantize of an activation quantized by a full-range uint8 quantize node."""
    return isinstance(a, Node) and a.target == DQ and getattr(a.args[0], "target", None) == Q and _full_range(a.args[0]) \
        and a.args[5] == torch.uint8


def _full_range(q: Any) -> bool:
    info = torch.iinfo(q.args[5])
    return (q.args[3], q.args[4]) == (info.min, info.max) and q.args[5] == torch.uint8


def _same_params(dq: Any, q: Any) -> bool:
    return tuple(dq.args[1:6]) == tuple(q.args[1:6])


def _all_weights_quantized(n: Any) -> bool:
    stride = 4 if n.args[3] else 2
    weights = [p for i, p in enumerate(n.args[2]) if i % stride < 2]
    return all(isinstance(w, Node) and w.target in (DQ, DQ_CH) for w in weights)


def _impure(n: Node) -> bool:
    """Only what this lowering adds or folds may be dropped when unused; aten calls stay."""
    return not (n.op == "get_attr" or n.target == "dequantize" or n.target == torch.quantize_per_tensor)


def _arg(n: Any, i: int) -> Any:
    return n.args[i]


def _map_args(n: Node, val: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return fx.node.map_arg(n.args, val), fx.node.map_arg(n.kwargs, val)




def _scalar_or_attr(gm: GraphModule, a: Any) -> Any:
    return attr_of(gm, a.target) if isinstance(a, Node) else a


def _qweight(gm: GraphModule, dq: Any) -> torch.Tensor:
    """The int8 weight behind a weight dequantize, as a torch quantized tensor."""
    codes = attr_of(gm, dq.args[0].target)
    if dq.target == DQ_CH:
        scales, zps, axis = _scalar_or_attr(gm, dq.args[1]), _scalar_or_attr(gm, dq.args[2]), dq.args[3]
        return torch._make_per_channel_quantized_tensor(codes, scales.double(), zps.long(), int(axis))
    return torch._make_per_tensor_quantized_tensor(codes, float(dq.args[1]), int(dq.args[2]))


def _constant_dequantize(gm: GraphModule, dq: Any) -> torch.Tensor:
    """A constant (weight or int32 bias) dequantized to float, for consumers that stay float."""
    codes = attr_of(gm, dq.args[0].target)
    if codes.dtype != torch.int32:
        return _qweight(gm, dq).dequantize()
    scale = _scalar_or_attr(gm, dq.args[1])
    if dq.target == DQ_CH:
        shape = [1] * codes.dim()
        shape[int(dq.args[3])] = -1
        scale = scale.reshape(shape)
    return (codes.double() * torch.as_tensor(scale, dtype=torch.float64)).float()


def _bias(gm: GraphModule, b: Any) -> torch.Tensor | None:
    """A float bias, or an int32 bias (scale = input x weight scale) dequantized."""
    if b is None:
        return None
    if b.op == "get_attr":
        return attr_of(gm, b.target).detach().float()
    return _constant_dequantize(gm, b)


def _conv_args(c: Any, rank: int) -> tuple[list[int], list[int], list[int], int]:
    defaults: list[Any] = [None, None, None, [1] * rank, [0] * rank, [1] * rank, 1]
    args = list(c.args) + defaults[len(c.args):]
    for i, key in ((3, "stride"), (4, "padding"), (5, "dilation"), (6, "groups")):
        if key in c.kwargs:
            args[i] = c.kwargs[key]

    def expand(v: Any) -> list[int]:
        return list(v) if isinstance(v, (list, tuple)) else [int(v)] * rank

    return expand(args[3]), expand(args[4]), expand(args[5]), int(args[6])


def _qdtype(dtype: torch.dtype) -> torch.dtype:
    return {torch.uint8: torch.quint8, torch.int8: torch.qint8, torch.int32: torch.qint32}[dtype]
