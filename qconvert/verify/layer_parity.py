"""Per-layer parity: every quantized tensor the runtime computed against the simulation of
that layer fed the runtime's own inputs.

End to end, an integer runtime and the float fake-quant simulation drift apart with depth:
each requantization may round one step differently (fixed-point multipliers, rounding
modes), and those one-step differences compound layer after layer (MobileNetV2, 66
requantizations: 3 output steps; see README "Parity at depth"). Here the simulation is
run once per batch with every quantize node whose tensor the runtime exposes replaced by
the runtime's value after it was compared: each layer is then simulated from exactly the
inputs the runtime's kernel had, and any difference is that layer's own. A corrupted
scale or a dropped Q/DQ pair shows at the layer where it is, named in the report.

Uses torch (it runs the simulation), so like ``layerwise`` it is never imported by
``qconvert verify``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.fx import GraphModule, Interpreter, Node
from torch.utils._pytree import tree_leaves

from qconvert.core.graph import arg_float, arg_int
from qconvert.core.quantize import QuantizedModel
from qconvert.io.data import Dataset
from qconvert.targets.base import Artifact, Target
from qconvert.targets.intermediates import Intermediates, RuntimeTensor
from qconvert.verify.chunks import ChunkSizer
from qconvert.verify.gates import end_to_end_bound
from qconvert.verify.report_schema import FirstDivergence, LayerParityEntry, LayerParityRow

__all__ = ["LAYER_PARITY_SAMPLES", "OUTLIER_FRACTION", "LayerParity", "ParityAtDepth", "depth_of", "layer_parity", "quantize_nodes"]

#: Samples run through the runtime with its intermediates exposed (one is enough to catch a
#: corrupted artifact; more catch rare rounding cases; every tensor of every layer is kept per batch).
LAYER_PARITY_SAMPLES = 64
#: A layer is judged on the difference that all but this fraction of its values stay within (its
#: 99.9th percentile, ``steps``). A defect (a wrong scale, zero point, bias or weight) moves a whole
#: tensor or channel; a runtime's own fixed-point approximation moves isolated values: LiteRT's int8
#: RESIZE_BILINEAR put 0.0025 % of the zoo segformer's decoder output 7 steps off. ``max_steps`` and
#: ``off_fraction`` still report those.
OUTLIER_FRACTION = 1e-3
_BINS = 256
_QT = torch.ops.quantized_decomposed.quantize_per_tensor.default
_DQT = torch.ops.quantized_decomposed.dequantize_per_tensor.default

Status = Literal["ok", "diverged", "grid", "missing", "not_exposed"]


@dataclass(frozen=True)
class LayerParity:
    """One quantized activation: the runtime's tensor against the simulation fed the runtime's inputs."""

    node: str
    tensor: str
    op: str
    module: str
    runtime_tensor: str | None
    status: Status
    #: Largest difference in this tensor's quantization steps (None: not compared).
    max_steps: float | None = None
    #: The difference all but OUTLIER_FRACTION of the values stay within (whole steps): what is judged.
    steps: float | None = None
    #: Fraction of elements more than the tolerance off.
    off_fraction: float | None = None
    #: Fraction of elements on another integer than the simulation's (mostly one step: rounding).
    differ_fraction: float | None = None
    detail: str = ""

    def where(self) -> str:
        return f"{self.op} '{self.module or self.tensor}' (tensor {self.tensor}, node {self.node})"

    def problem(self) -> str:
        if self.status == "missing":
            return "its quantized tensor is missing from the artifact (a dropped Q/DQ pair?)"
        if self.status == "grid":
            return self.detail
        return (f"{self.steps:.0f} steps off the simulation fed the runtime's inputs (max {self.max_steps:.0f}, "
                f"{100 * (self.off_fraction or 0):.2f} % of values beyond the tolerance)")

    def row(self) -> LayerParityRow:
        """As report.json's ``layer_parity.layers`` holds it."""
        return LayerParityRow.model_validate(self, from_attributes=True)


@dataclass(frozen=True)
class ParityAtDepth:
    """Per-layer parity of one artifact, layers in graph order."""

    tolerance_lsb: float
    samples: int
    #: Requantizations on the longest input-to-output path of the simulation.
    depth: int
    layers: tuple[LayerParity, ...]
    #: Every graph output is the dequantized value of a compared tensor, or a float output (TensorRT's
    #: logits) compared with the simulation of its float tail fed the runtime's last quantized tensors:
    #: nothing after the last compared layer is left unchecked.
    outputs_covered: bool = False

    @property
    def compared(self) -> int:
        return sum(1 for la in self.layers if la.status in ("ok", "diverged"))

    @property
    def first_divergence(self) -> LayerParity | None:
        return next((la for la in self.layers if la.status in ("diverged", "grid", "missing")), None)

    @property
    def max_steps(self) -> float | None:
        """Worst per-layer difference; None when a tensor is missing or on another grid (not measurable)."""
        if any(la.status in ("grid", "missing") for la in self.layers):
            return None
        return max((la.steps for la in self.layers if la.steps is not None), default=0.0)

    @property
    def end_to_end_bound_lsb(self) -> float:
        return end_to_end_bound(self.tolerance_lsb, self.depth)

    def entry(self) -> LayerParityEntry:
        """As report.json's ``layer_parity`` holds it."""
        first = self.first_divergence
        return LayerParityEntry(
            tolerance_lsb=self.tolerance_lsb, samples=self.samples, depth=self.depth, compared=self.compared,
            max_lsb_error=self.max_steps, outputs_covered=self.outputs_covered, end_to_end_bound_lsb=self.end_to_end_bound_lsb,
            first_divergence=None if first is None else FirstDivergence(**first.row().model_dump(),
                                                                        text=f"{first.where()}: {first.problem()}"),
            layers=[la.row() for la in self.layers],
        )


def quantize_nodes(gm: GraphModule) -> list[Node]:
    """The activation quantize nodes (static, per tensor), in graph order."""
    return [n for n in gm.graph.nodes if n.target == _QT]


def depth_of(gm: GraphModule) -> int:
    """Requantizations on the longest path from an input to an output."""
    depth: dict[Node, int] = {}
    for n in gm.graph.nodes:
        before = max((depth[a] for a in n.all_input_nodes), default=0)
        depth[n] = before + (1 if n.target == _QT else 0)
    return max(depth.values(), default=0)


class _Acc:
    def __init__(self) -> None:
        self.max_steps = 0.0
        self.off = 0
        self.differ = 0
        self.hist = torch.zeros(_BINS + 1, dtype=torch.long)
        self.total = 0
        self.detail = ""


class _FedByRuntime(Interpreter):
    """The simulation with each exposed quantize node's value replaced by the runtime's, once compared."""

    def __init__(self, gm: GraphModule, runtime: Mapping[str, RuntimeTensor], acc: dict[str, _Acc], tolerance: float) -> None:
        super().__init__(gm)
        self.runtime = runtime
        self.acc = acc
        self.tolerance = tolerance

    def run_node(self, n: Node) -> Any:
        out = super().run_node(n)
        rt = self.runtime.get(n.name)
        if rt is None:
            return out
        scale, zp, qmin, qmax = arg_float(n, 1), arg_int(n, 2), arg_int(n, 3), arg_int(n, 4)
        acc = self.acc[n.name]
        values = torch.from_numpy(np.ascontiguousarray(rt.values))
        if tuple(values.shape) != tuple(out.shape):
            acc.detail = f"shape {tuple(values.shape)} in the runtime, {tuple(out.shape)} in the simulation"
            return out
        if np.float32(rt.scale) != np.float32(scale) or rt.zero_point != zp:
            acc.detail = (f"scale {rt.scale:.6g} / zero point {rt.zero_point} in the artifact, "
                          f"{scale:.6g} / {zp} in the simulation")
        got = (values.double() - rt.zero_point) * rt.scale
        steps = ((out.double() - zp) * scale - got).abs() / scale
        acc.max_steps = max(acc.max_steps, float(steps.max()) if steps.numel() else 0.0)
        acc.off += int((steps > self.tolerance + 1e-3).sum())
        acc.differ += int((steps > 0.5).sum())
        acc.hist += torch.bincount(torch.clamp(torch.round(steps), max=_BINS).long().flatten(), minlength=_BINS + 1)
        acc.total += steps.numel()
        return torch.clamp(torch.round(got / scale) + zp, qmin, qmax).to(out.dtype)


def _op_of(node: Node) -> str:
    src = node.args[0]
    if not isinstance(src, Node):
        return "?"
    if src.op == "placeholder":
        return "input"
    name = getattr(src.target, "__name__", str(src.target))
    return name.split(".")[0]


def _module_of(qmodel: QuantizedModel, node: Node) -> str:
    """The module whose output a quantize node quantizes."""
    src = node.args[0]
    return _module_of_node(qmodel, src) if isinstance(src, Node) else ""


def layer_parity(target: Target, artifact: Artifact, qmodel: QuantizedModel, data: Dataset, tolerance_lsb: float,
                 batch_size: int, limit: int = LAYER_PARITY_SAMPLES) -> ParityAtDepth | None:
    """Per-layer parity of ``artifact``, or None when its target exposes no intermediates."""
    nodes = quantize_nodes(qmodel.graph)
    acc = {n.name: _Acc() for n in nodes}
    steps_of = qmodel.parity_steps()
    float_outputs = _float_outputs(qmodel.graph, steps_of)
    out_acc = {i: _Acc() for i in float_outputs}
    exposed: dict[str, str] = {}
    missing: set[str] = set()
    samples = 0
    sizer = ChunkSizer()  # every exposed tensor of a sub-batch is held at once: sized to a memory budget
    with torch.no_grad():
        for b in data.batches(batch_size, limit):
            for chunk in sizer.chunks(b.inputs):
                run: Intermediates | None = target.run_with_intermediates(artifact, dict(zip(artifact.input_names, chunk)))
                if run is None:
                    return None
                exposed.update({k: t.name for k, t in run.tensors.items()})
                missing.update(run.missing)
                fed = _FedByRuntime(qmodel.simulation, run.tensors, acc, tolerance_lsb).run(*(torch.from_numpy(np.array(a)) for a in chunk))
                leaves = tree_leaves(fed)
                for i in float_outputs:
                    _compare_output(out_acc[i], leaves[i] if i < len(leaves) else None, run.outputs, i, steps_of[i], tolerance_lsb)
                # the runtime's tensors, and as much again for the simulation's values and their float64 comparison
                sizer.observed(2 * sum(np.asarray(t.values).nbytes for t in run.tensors.values()), len(chunk[0]))
                samples += len(chunk[0])
    layers = tuple(_row(qmodel, n, acc[n.name], exposed.get(n.name), n.name in missing, tolerance_lsb) for n in nodes)
    layers += tuple(_output_row(qmodel, i, o, out_acc[i], tolerance_lsb) for i, o in float_outputs.items())
    compared = {la.node for la in layers if la.status in ("ok", "diverged")}
    return ParityAtDepth(tolerance_lsb, samples, depth_of(qmodel.graph), layers, _outputs_covered(qmodel.graph, compared))


def _graph_outputs(gm: GraphModule) -> list[Any]:
    out = next(n for n in gm.graph.nodes if n.op == "output")
    flat: list[Any] = []
    torch.fx.node.map_arg(out.args[0], flat.append)
    return flat


def _float_outputs(gm: GraphModule, steps: list[float | None]) -> dict[int, Node]:
    """Graph outputs computed in float after the last quantized tensor (TensorRT's logits), by position,
    where a parity step is known for them: compared as one more layer, fed the runtime's last tensors."""
    return {i: o for i, o in enumerate(_graph_outputs(gm))
            if isinstance(o, Node) and o.target != _DQT and o.op != "placeholder" and i < len(steps) and steps[i]}


def _output_node_name(i: int) -> str:
    return f"output_{i}"


def _compare_output(acc: _Acc, sim: Any, outputs: list[np.ndarray], i: int, step: float | None, tolerance: float) -> None:
    if step is None or i >= len(outputs) or not isinstance(sim, torch.Tensor) or not sim.is_floating_point():
        acc.detail = acc.detail or "not among the runtime's outputs as a float tensor"
        return
    got = torch.from_numpy(np.ascontiguousarray(outputs[i])).double()
    if tuple(got.shape) != tuple(sim.shape):
        acc.detail = f"shape {tuple(got.shape)} in the runtime, {tuple(sim.shape)} in the simulation"
        return
    steps = (sim.double() - got).abs() / step
    acc.max_steps = max(acc.max_steps, float(steps.max()) if steps.numel() else 0.0)
    acc.off += int((steps > tolerance + 1e-3).sum())
    acc.differ += int((steps > 0.5).sum())
    acc.hist += torch.bincount(torch.clamp(torch.round(steps), max=_BINS).long().flatten(), minlength=_BINS + 1)
    acc.total += steps.numel()


def _output_row(qmodel: QuantizedModel, i: int, node: Node, acc: _Acc, tolerance: float) -> LayerParity:
    names = qmodel.captured.output_names
    name = names[i] if i < len(names) else node.name
    common: dict[str, Any] = {"node": _output_node_name(i), "tensor": name, "op": f"{_target_name(node)} (float output)",
                              "module": _module_of_node(qmodel, node)}
    if acc.detail or not acc.total:
        return LayerParity(**common, runtime_tensor=None, status="not_exposed", detail=acc.detail)
    return _judged(common, name, acc, tolerance)


def _target_name(node: Node) -> str:
    return getattr(node.target, "__name__", str(node.target)).split(".")[0]


def _module_of_node(qmodel: QuantizedModel, node: Node) -> str:
    """The module that computed ``node``: the quantization decision's, else the export's module stack."""
    tq = qmodel.decisions.get(node.name)
    if tq is not None:
        return tq.module
    stack = node.meta.get("nn_module_stack") or {}
    return str(list(stack.values())[-1][0]) if stack else ""


def _outputs_covered(gm: GraphModule, compared: set[str]) -> bool:
    flat = _graph_outputs(gm)
    return bool(flat) and all(_output_node_name(i) in compared
                              or (isinstance(o, Node) and o.target == _DQT and isinstance(o.args[0], Node) and o.args[0].name in compared)
                              for i, o in enumerate(flat))


def _row(qmodel: QuantizedModel, n: Node, acc: _Acc, runtime_name: str | None, missing: bool, tolerance: float) -> LayerParity:
    src = n.args[0]
    common: dict[str, Any] = {"node": n.name, "tensor": src.name if isinstance(src, Node) else "?", "op": _op_of(n),
                              "module": _module_of(qmodel, n)}
    if missing:
        return LayerParity(**common, runtime_tensor=None, status="missing")
    if runtime_name is None:
        return LayerParity(**common, runtime_tensor=None, status="not_exposed")
    if acc.detail:
        return LayerParity(**common, runtime_tensor=runtime_name, status="grid", max_steps=acc.max_steps, detail=acc.detail)
    return _judged(common, runtime_name, acc, tolerance)


def _judged(common: dict[str, Any], runtime_name: str, acc: _Acc, tolerance: float) -> LayerParity:
    cum = torch.cumsum(acc.hist, 0)
    bulk = float(torch.searchsorted(cum, (1.0 - OUTLIER_FRACTION) * acc.total).item()) if acc.total else 0.0
    status: Status = "diverged" if bulk > tolerance + 1e-3 else "ok"
    return LayerParity(**common, runtime_tensor=runtime_name, status=status, max_steps=acc.max_steps,
                       steps=bulk, off_fraction=acc.off / acc.total if acc.total else 0.0,
                       differ_fraction=acc.differ / acc.total if acc.total else 0.0)
