"""Our torchao ``Quantizer``: decides which tensors of the graph are quantized.

Placement follows what integer runtimes fuse: inputs and weights of conv/linear,
one quantizer after a fused activation (conv-bn-relu is one group), both inputs
and the output of binary ops, outputs of pools and concatenations; data-movement
ops share their input's parameters. Schemes come from the ``QuantPolicy``.
A target's ``Placement`` switches rules off or swaps them (TensorRT: no outputs,
residual adds quantized on the branch that does not fuse, float biases).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.fx import GraphModule, Node
from torchao.quantization.pt2e.quantizer import (
    DerivedQuantizationSpec,
    QuantizationAnnotation,
    QuantizationSpec,
    Quantizer,
    SharedQuantizationSpec,
)

from qconvert.core.dynamic import annotate_dynamic
from qconvert.core.graph import OpKind, arg_float, is_float_tensor, module_of, op_kind
from qconvert.core.observer import QObserver
from qconvert.core.placement import DEFAULT_PLACEMENT, Placement
from qconvert.core.plan import TensorQuant
from qconvert.core.policy import QuantPolicy

__all__ = ["QConvertQuantizer"]

_ANNOTATION_KEY = "quantization_annotation"
_ADD = {torch.ops.aten.add.Tensor, torch.ops.aten.add_.Tensor}


class QConvertQuantizer(Quantizer):
    """Annotates a captured graph per a ``QuantPolicy``; records every decision in ``self.decisions``."""

    def __init__(self, policy: QuantPolicy, quantize_bias: bool = True, placement: Placement = DEFAULT_PLACEMENT) -> None:
        super().__init__()
        self.policy = policy
        self.placement = placement
        self.quantize_bias = quantize_bias and placement.int32_bias
        self.decisions: dict[str, TensorQuant] = {}
        self._act_qspec: dict[Node, Any] = {}

    def validate(self, model: GraphModule) -> None:
        return None

    def annotate(self, model: GraphModule) -> GraphModule:
        for node in model.graph.nodes:
            if self.policy.dynamic(module_of(node)):
                annotate_dynamic(self, node)
                continue
            kind = op_kind(node)
            if kind == OpKind.OTHER or kind == OpKind.FUSED_ACT:
                continue
            if self.policy.excluded(module_of(node)):
                continue
            if kind != OpKind.WEIGHTED and not self.policy.quantizes("activations"):
                continue  # weight-only: activations stay float everywhere
            if kind == OpKind.WEIGHTED:
                self._annotate_weighted(node)
            elif kind == OpKind.BINARY and self.placement.elementwise == "residual_add":
                self._annotate_residual_add(node)
            elif kind == OpKind.BINARY and self.placement.elementwise == "add" and node.target not in _ADD:
                continue
            elif kind in (OpKind.BINARY, OpKind.MATMUL):
                self._annotate_multi_input(node, [a for a in node.args[:2]])
            elif kind == OpKind.CAT and self.placement.pool_and_concat:
                self._annotate_multi_input(node, list(node.args[0]))
            elif kind == OpKind.POOL and self.placement.pool_and_concat:
                self._annotate_multi_input(node, [node.args[0]])
            elif kind == OpKind.PASS:
                self._annotate_passthrough(node)
        return model

    def make_spec(self, tq: TensorQuant) -> QuantizationSpec:
        """The torchao spec (and observer) for one tensor; benchmarks override it to swap observers."""
        return _spec(tq, self.policy)

    # -- helpers ---------------------------------------------------------------

    def _qspec_for(self, tensor: Node) -> QuantizationSpec:
        """One QuantizationSpec object per quantized tensor, so torchao shares its observer."""
        if tensor not in self._act_qspec:
            tq = self.policy.activation(tensor.name, module_of(tensor), _fixed_range(tensor), _clamp(tensor))
            self.decisions[tq.key] = tq
            self._act_qspec[tensor] = self.make_spec(tq)
            if tensor.op != "get_attr" and self.placement.quantize_at == "producer":
                self._set(tensor, {}, self._act_qspec[tensor])
        return self._act_qspec[tensor]

    def _set(self, node: Node, inputs: dict[Node, Any], output: Any) -> None:
        ann = node.meta.get(_ANNOTATION_KEY) or QuantizationAnnotation()
        ann.input_qspec_map.update(inputs)
        if output is not None and ann.output_qspec is None:
            ann.output_qspec = output
        ann._annotated = True
        node.meta[_ANNOTATION_KEY] = ann

    def _output_of_group(self, node: Node) -> Node:
        """The last node of node + fused activation (relu, relu6/hardtanh)."""
        users = list(node.users)
        if len(users) == 1 and op_kind(users[0]) == OpKind.FUSED_ACT and not self.policy.excluded(module_of(users[0])):
            return users[0]
        return node

    def _annotate_output(self, node: Node) -> None:
        if not self.placement.outputs:
            return
        out = self._output_of_group(node)
        if is_float_tensor(out):
            self._qspec_for(out)

    def _annotate_weighted(self, node: Node) -> None:
        x, w = node.args[0], node.args[1]
        if not (isinstance(x, Node) and is_float_tensor(x) and isinstance(w, Node)):
            return
        module = module_of(node)
        acts, weights = self.policy.quantizes("activations"), self.policy.quantizes("weights")
        inputs: dict[Node, Any] = {x: self._qspec_for(x)} if acts else {}
        if weights:
            wq = self.policy.weight(f"{module or node.name}.weight", module, ch_axis=0, depthwise=_is_depthwise(node))
            self.decisions[wq.key] = wq
            inputs[w] = self.make_spec(wq)
        bias = node.args[2] if len(node.args) > 2 else None
        if acts and weights and self.quantize_bias and isinstance(bias, Node):  # an int32 bias needs both scales
            inputs[bias] = _bias_spec(x, w, node, wq)
        self._set(node, inputs, None)
        if acts:
            self._annotate_output(node)

    def _annotate_multi_input(self, node: Node, args: list[Any]) -> None:
        tensors = [a for a in args if isinstance(a, Node)]
        if not tensors or not all(is_float_tensor(a) and a.op != "get_attr" for a in tensors):
            return
        self._set(node, {a: self._qspec_for(a) for a in tensors}, None)
        self._annotate_output(node)

    def _annotate_passthrough(self, node: Node) -> None:
        x = node.args[0]
        if not (isinstance(x, Node) and x in self._act_qspec and is_float_tensor(node)):
            return
        self._set(node, {x: self._act_qspec[x]}, SharedQuantizationSpec((x, node)))
        self._act_qspec[node] = SharedQuantizationSpec((x, node))

    def _annotate_residual_add(self, node: Node) -> None:
        """Placement ``residual_add``: the add fuses into the conv/linear feeding it, so
        only its other input is quantized; an add with no such producer, and mul, stay float."""
        args = [a for a in node.args[:2] if isinstance(a, Node)]
        if node.target not in _ADD or len(args) != 2 or not all(is_float_tensor(a) and a.op != "get_attr" for a in args):
            return
        fused = next((a for a in args if self._fuses_into(a, node)), None)
        others = [a for a in args if a is not fused]
        if fused is None or not others:
            return
        self._set(node, {a: self._qspec_for(a) for a in others}, None)

    def _fuses_into(self, producer: Node, add: Node) -> bool:
        return op_kind(producer) == OpKind.WEIGHTED and list(producer.users) == [add] and not self.policy.excluded(module_of(producer))


_BOUNDED_INPUTS: dict[object, tuple[float, float]] = {torch.ops.aten.tanh.default: (-4.0, 4.0), torch.ops.aten.sigmoid.default: (-6.0, 6.0)}


def _is_depthwise(node: Node) -> bool:
    """A grouped convolution with one input channel per group (groups == input channels > 1)."""
    if node.target not in (torch.ops.aten.conv2d.default, torch.ops.aten.conv1d.default, torch.ops.aten.conv2d.padding):
        return False
    groups = node.args[6] if len(node.args) > 6 else node.kwargs.get("groups", 1)
    w = node.args[1].meta.get("val") if isinstance(node.args[1], Node) else None
    return isinstance(groups, int) and groups > 1 and isinstance(w, torch.Tensor) and w.shape[1] == 1


def _fixed_range(tensor: Node) -> tuple[float, float] | None:
    """ReLU6 (hardtanh) outputs have a range known without data."""
    if tensor.op == "call_function" and tensor.target in (torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default):
        lo = arg_float(tensor, 1) if len(tensor.args) > 1 else -1.0
        hi = arg_float(tensor, 2) if len(tensor.args) > 2 else 1.0
        return lo, hi
    if tensor.op == "call_function" and tensor.target == torch.ops.aten.relu6.default:
        return 0.0, 6.0
    return None


def _clamp(tensor: Node) -> tuple[float, float] | None:
    """Inputs of saturating activations need no range beyond where they saturate."""
    bounds = {_BOUNDED_INPUTS.get(u.target) for u in tensor.users}
    if len(bounds) == 1 and None not in bounds:
        return bounds.pop()
    return None


def _spec(tq: TensorQuant, policy: QuantPolicy) -> QuantizationSpec:
    probe = QObserver(tq, policy.calib)
    return QuantizationSpec(
        dtype=probe.dtype,
        observer_or_fake_quant_ctr=QObserver.with_args(spec=tq, calib=policy.calib),
        quant_min=probe.quant_min,
        quant_max=probe.quant_max,
        qscheme=probe.qscheme,
        ch_axis=probe.ch_axis,
    )


def _bias_spec(x: Node, w: Node, node: Node, wq: TensorQuant) -> DerivedQuantizationSpec:
    """int32 bias with scale = input scale x weight scale, zero point 0."""

    def derive(observers: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        act_scale, _ = observers[0].calculate_qparams()
        w_scale, _ = observers[1].calculate_qparams()
        scale = (act_scale * w_scale).float()
        return scale, torch.zeros_like(scale, dtype=torch.int32)

    per_channel = wq.per_channel
    return DerivedQuantizationSpec(
        derived_from=[(x, node), (w, node)],
        derive_qparams_fn=derive,
        dtype=torch.int32,
        quant_min=-(2**31),
        quant_max=2**31 - 1,
        qscheme=torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric,
        ch_axis=0 if per_channel else None,
    )
