"""The training graph: the captured float graph with fake quantizers where a build puts Q/DQ.

Placement is not decided here. The core's ``QConvertQuantizer`` annotates a copy of the
captured graph and torchao's ``prepare_pt2e`` inserts an observer on every tensor a build
quantizes (BatchNorm folded into its convolution first). This module reads that prepared
graph and mirrors it onto an unfolded copy of the captured graph: each observer becomes a
``FakeQuant`` on the same tensor, feeding the same consumers, with the same decision (key,
scheme, sharing); each folded conv-bn pair becomes a ``ConvBnQAT`` whose weights are
quantized after folding. Node names are the captured graph's, so the keys of the learned
ranges are the keys a build looks up.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
from torch.fx import GraphModule, Node

from qconvert.core.graph import OpKind, arg_node, attr_of, op_kind
from qconvert.core.observer import QObserver
from qconvert.errors import CaptureError
from qconvert.qat.convbn import ConvBnQAT
from qconvert.qat.fake_quant import BiasFakeQuant, FakeQuant

__all__ = ["MakeFakeQuant", "attr_of", "training_graph"]

#: Builds the fake quantizer for one observer: (observer, channels, passive) -> FakeQuant.
MakeFakeQuant = Callable[[QObserver, int, bool], FakeQuant]

_BATCH_NORM = torch.ops.aten.batch_norm.default


def training_graph(float_graph: GraphModule, prepared: GraphModule, make_fq: MakeFakeQuant) -> GraphModule:
    """A trainable copy of ``float_graph`` quantized where ``prepared`` observes.

    ``prepared`` is ``prepare_pt2e`` of a copy of ``float_graph`` with the core's quantizer;
    observers that feed nothing (coverage for other placements) become passive observers.
    """
    with warnings.catch_warnings():  # torch's own deprecation notices while copying a graph module
        warnings.simplefilter("ignore")
        gm = copy.deepcopy(float_graph)
    rewriter = _Rewriter(gm, prepared, make_fq)
    rewriter.fold_conv_bn()
    rewriter.place_fake_quants()
    rewriter.place_bias_quants()
    gm.graph.lint()
    gm.recompile()
    return gm


class _Rewriter:
    def __init__(self, gm: GraphModule, prepared: GraphModule, make_fq: MakeFakeQuant) -> None:
        self.gm, self.prepared, self.make_fq = gm, prepared, make_fq
        self.nodes = {n.name: n for n in gm.graph.nodes}
        self.modules = dict(prepared.named_modules(remove_duplicate=False))
        self.convbn: dict[str, tuple[Node, ConvBnQAT]] = {}  # conv node name -> replacement
        self.inserted: dict[str, Node] = {}  # prepared observer node name -> fake-quant node
        self.fq_names: dict[int, str] = {}  # id(observer) -> fake-quant submodule name

    def fold_conv_bn(self) -> None:
        """Replace each conv -> batch_norm pair that ``prepare_pt2e`` folded with a ``ConvBnQAT``."""
        kept = {n.name for n in self.prepared.graph.nodes}
        for bn in list(self.gm.graph.nodes):
            if bn.target != _BATCH_NORM or bn.name in kept:
                continue
            conv = bn.args[0]
            if not (isinstance(conv, Node) and op_kind(conv) == OpKind.WEIGHTED and len(conv.users) == 1):
                raise RuntimeError(f"BatchNorm '{bn.name}' was folded into something that is not a lone convolution")
            args = list(bn.args) + [None] * (9 - len(bn.args))
            module = ConvBnQAT(conv.target, tuple(conv.args[3:]), float(args[6] if args[6] is not None else 0.1),  # type: ignore[arg-type]  # numbers in the op schema
                               float(args[7] if args[7] is not None else 1e-5), None)
            name = f"qat_convbn_{len(self.convbn)}"
            self.gm.add_submodule(name, module)
            bias = conv.args[2] if len(conv.args) > 2 else None
            with self.gm.graph.inserting_before(bn):
                node = self.gm.graph.call_module(name, (conv.args[0], conv.args[1], bias, args[1], args[2], args[3], args[4]))
            node.meta = dict(bn.meta)
            bn.replace_all_uses_with(node)
            self.gm.graph.erase_node(bn)
            self.gm.graph.erase_node(conv)
            self.convbn[conv.name] = (node, module)

    def _mapped(self, prepared_node: Node) -> Node:
        """The training-graph node computing what ``prepared_node`` computes."""
        if prepared_node.name in self.inserted:
            return self.inserted[prepared_node.name]
        if prepared_node.name in self.convbn:
            return self.convbn[prepared_node.name][0]
        if prepared_node.op == "output":
            return next(n for n in self.gm.graph.nodes if n.op == "output")
        return self.nodes[prepared_node.name]

    def _fq_node(self, obs: QObserver, src: Node, channels: int, passive: bool) -> Node:
        key = id(obs)
        if key not in self.fq_names:
            self.fq_names[key] = name = f"qat_fq_{len(self.fq_names)}"
            self.gm.add_submodule(name, self.make_fq(obs, channels, passive))
        with self.gm.graph.inserting_after(src):
            return self.gm.graph.call_module(self.fq_names[key], (src,))

    def place_fake_quants(self) -> None:
        for node in self.prepared.graph.nodes:
            obs = self.modules.get(str(node.target)) if node.op == "call_module" else None
            if not isinstance(obs, QObserver):
                continue
            if obs.spec.role == "weight":
                self._place_weight(node, obs)
            else:
                self._place_activation(node, obs)

    def _place_weight(self, node: Node, obs: QObserver) -> None:
        if len(node.users) != 1:
            raise CaptureError(f"weight '{obs.spec.key}' is used by {len(node.users)} layers; QAT quantizes each weight for one layer")
        (user,) = node.users
        weight = attr_of(self.prepared, str(arg_node(node, 0).target))
        channels = weight.shape[obs.ch_axis] if obs.ch_axis is not None else 1
        if user.name in self.convbn:
            _, module = self.convbn[user.name]
            module.weight_fq = self.make_fq(obs, channels, False)
            return
        consumer = self.nodes[user.name]
        w = consumer.args[1]
        assert isinstance(w, Node)
        fq = self._fq_node(obs, w, channels, False)
        consumer.replace_input_with(w, fq)

    def _place_activation(self, node: Node, obs: QObserver) -> None:
        src = node.args[0]
        assert isinstance(src, Node)
        source = self._mapped(src)
        users = [u for u in node.users if not self._is_observer(u)]
        fq = self._fq_node(obs, source, 1, passive=not node.users)
        self.inserted[node.name] = fq
        for user in users:
            self._mapped(user).replace_input_with(source, fq)

    def place_bias_quants(self) -> None:
        """Biases a build quantizes (a derived int32 spec on the conv/linear's bias input)."""
        for node in self.prepared.graph.nodes:
            bias = node.args[2] if op_kind(node) == OpKind.WEIGHTED and len(node.args) > 2 else None
            if not (isinstance(bias, Node) and bias.op == "call_module" and not self._is_observer(bias)):
                continue
            x_obs, w_obs = node.args[0], node.args[1]
            if not (isinstance(x_obs, Node) and self._is_observer(x_obs) and isinstance(w_obs, Node) and self._is_observer(w_obs)):
                continue
            act = self.gm.get_submodule(self.fq_names[id(self.modules[str(x_obs.target)])])
            if node.name in self.convbn:
                module = self.convbn[node.name][1]
                assert module.weight_fq is not None
                module.bias_fq = BiasFakeQuant(act, module.weight_fq)  # type: ignore[arg-type]  # fake quantizers: nn.Module to mypy
                continue
            weight = self.gm.get_submodule(self.fq_names[id(self.modules[str(w_obs.target)])])
            consumer = self.nodes[node.name]
            b = consumer.args[2]
            assert isinstance(b, Node)
            name = f"qat_bias_{sum(1 for n, _ in self.gm.named_children() if n.startswith('qat_bias_'))}"
            self.gm.add_submodule(name, BiasFakeQuant(act, weight))  # type: ignore[arg-type]  # as above
            with self.gm.graph.inserting_before(consumer):
                bq = self.gm.graph.call_module(name, (b,))
            consumer.replace_input_with(b, bq)

    def _is_observer(self, node: Node) -> bool:
        return node.op == "call_module" and isinstance(self.modules.get(str(node.target)), QObserver)

