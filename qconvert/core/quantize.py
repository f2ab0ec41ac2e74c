"""Calibrate once; derive a quantized Q/DQ graph per target from the statistics."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch.fx import GraphModule
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

from qconvert.core.act_ranges import learn_activation_ranges
from qconvert.core.adaround import learn_rounding
from qconvert.core.annotate import QConvertQuantizer
from qconvert.core.bias_analytic import correct_biases_analytic
from qconvert.core.bias_correction import correct_biases
from qconvert.core.bias_headroom import widen_for_int32_bias
from qconvert.core.bn_folded import bn_folded
from qconvert.core.capture import Captured
from qconvert.core.constraints import QuantConstraints
from qconvert.core.coverage import observe_consumed_tensors
from qconvert.core.graph import attr_of, module_of
from qconvert.core.intarith import integer_simulation
from qconvert.core.observer import QObserver
from qconvert.core.placement import DEFAULT_PLACEMENT, Placement
from qconvert.core.plan import TensorQuant
from qconvert.core.policy import QuantPolicy
from qconvert.core.requantize import FoldedRequantization, fold_requantization
from qconvert.core.stats import StatsSet
from qconvert.errors import BadInputError, DataError, StatsError
from qconvert.recipe.model import Recipe

__all__ = ["QParamSummary", "QuantizedModel", "calibrate", "quantize"]


@dataclass(frozen=True)
class QParamSummary:
    key: str
    role: str
    module: str
    bits: int
    mode: str
    granularity: str
    power_of_two: bool
    method: str
    scale_min: float
    scale_max: float
    zero_point: int | None


@dataclass(frozen=True)
class QuantizedModel:
    """The single source of truth: a PT2E Q/DQ graph plus the decisions behind it.

    ``graph`` runs in plain torch and is the simulation every artifact is compared with.
    """

    graph: GraphModule
    captured: Captured
    recipe: Recipe
    target: str
    decisions: dict[str, TensorQuant]
    qparams: tuple[QParamSummary, ...]
    warnings: tuple[str, ...] = field(default=())
    #: Per output: None where the output is quantized (its scale is in ``output_scales``), else the
    #: scale it would have as an activation of this target (TensorRT leaves the logits float).
    float_output_steps: tuple[float | None, ...] = field(default=())
    #: Layers whose requantization ratios were made fixed-point (recipe ``requantize``).
    requantization: tuple[FoldedRequantization, ...] = field(default=())
    #: ``graph`` with some conv/linear computed in a device's integer arithmetic (recipe
    #: ``requantize.arithmetic``, ``core.intarith``); None: the simulation is ``graph`` itself.
    integer_graph: GraphModule | None = field(default=None, repr=False, compare=False)
    #: The calibration batches again, where the build has the data (not with --stats or a QAT checkpoint):
    #: targets that ship calibration inputs (TIDL's import frames) stream them from here.
    calibration_batches: Callable[[], Iterable[tuple[torch.Tensor, ...]]] | None = field(default=None, repr=False, compare=False)

    @property
    def simulation(self) -> GraphModule:
        """The graph the simulation runs: ``graph``, or its integer-arithmetic copy (exporters read ``graph``)."""
        return self.integer_graph if self.integer_graph is not None else self.graph

    @property
    def input_names(self) -> tuple[str, ...]:
        return self.captured.input_names

    @property
    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        return self.captured.example_inputs

    def example_inputs_at(self, batch: int) -> tuple[torch.Tensor, ...]:
        """The example inputs repeated to ``batch`` rows: inputs for timing, where values do not matter."""
        return tuple(torch.cat([t] * -(-batch // t.shape[0]))[:batch].contiguous() for t in self.example_inputs)

    def output_scales(self) -> list[float | None]:
        """Scale of each graph output's final dequantize, None where an output is float."""
        out_node = next(n for n in self.graph.graph.nodes if n.op == "output")
        outs = out_node.args[0]
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        scales: list[float | None] = []
        for o in outs:
            if getattr(o, "target", None) == torch.ops.quantized_decomposed.dequantize_per_tensor.default:
                scales.append(float(o.args[1]))
            else:
                scales.append(None)
        return scales

    def parity_steps(self) -> list[float | None]:
        """The step parity is measured in, per output: its own scale, or for a float output
        the scale it would have under this target's activation scheme."""
        steps = list(self.float_output_steps) + [None] * len(self.output_scales())
        return [s if s is not None else steps[i] for i, s in enumerate(self.output_scales())]


def _observers(gm: GraphModule) -> list[QObserver]:
    seen: dict[int, QObserver] = {}
    for m in gm.modules():
        if isinstance(m, QObserver):
            seen.setdefault(id(m), m)
    return list(seen.values())


def _prepare(captured: Captured, policy: QuantPolicy, placement: Placement = DEFAULT_PLACEMENT) -> tuple[GraphModule, QConvertQuantizer]:
    quantizer = QConvertQuantizer(policy, placement=placement)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_pt2e(copy.deepcopy(bn_folded(captured.graph)), quantizer)
    return prepared, quantizer


@torch.no_grad()
def calibrate(captured: Captured, recipe: Recipe, batches: Iterable[tuple[torch.Tensor, ...]]) -> StatsSet:
    """One pass over the data; statistics for every tensor any target may quantize."""
    prepared, _ = _prepare(captured, QuantPolicy(recipe))
    observe_consumed_tensors(prepared, recipe, {o.spec.key for o in _observers(prepared)})
    for batch in batches:
        prepared(*batch)
    stats = {o.spec.key: o.running.snapshot() for o in _observers(prepared) if o.spec.role == "activation"}
    return StatsSet(captured.fingerprint, stats)


def _feed_weights(prepared: GraphModule) -> None:
    modules = dict(prepared.named_modules())
    for node in prepared.graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), QObserver):
            continue
        obs = modules[node.target]
        src = node.args[0]
        if obs.spec.role == "weight" and getattr(src, "op", None) == "get_attr":
            obs(attr_of(prepared, src.target))




@torch.no_grad()
def quantize(
    captured: Captured,
    recipe: Recipe,
    stats: StatsSet,
    constraints: QuantConstraints | None = None,
    target: str = "",
    placement: Placement = DEFAULT_PLACEMENT,
    calibration_batches: Callable[[], Iterable[tuple[torch.Tensor, ...]]] | None = None,
    weight_ranges: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    activation_ranges: Mapping[str, tuple[float, float]] | None = None,
) -> QuantizedModel:
    """Build the Q/DQ graph for one target from calibration statistics, without data.

    Only ``recipe.bias_correction`` and ``recipe.weight_rounding: adaround`` read data again: ``calibration_batches``
    must then yield the calibration batches.

    ``weight_ranges`` maps weight keys to (lo, hi) learned in quantization-aware
    training (per channel where the weight is); those weights are quantized over
    that range instead of their min/max.

    ``placement`` says where the target wants Q/DQ; every tensor it picks must
    have been observed by ``calibrate`` (which covers the data inputs of every
    conv, linear, matmul and add), or this raises ``StatsError``.
    """
    if stats.fingerprint != captured.fingerprint:
        raise StatsError(
            f"statistics were collected on another model or input shape (fingerprint {stats.fingerprint}, "
            f"this model {captured.fingerprint}); re-run 'qconvert calibrate' for this model"
        )
    if recipe.activation_ranges == "learned" and activation_ranges is None:
        if calibration_batches is None:
            raise DataError("activation_ranges: learned needs the calibration data: pass --calib-data (statistics alone are not enough)")
        plain = recipe.model_copy(update={"activation_ranges": "calibrated", "weight_rounding": "nearest", "bias_correction": False})
        first = quantize(captured, plain, stats, constraints, target, placement, calibration_batches, weight_ranges)
        learned = learn_activation_ranges(captured.graph, first.graph, calibration_batches, recipe.activation_range_samples)
        activation_ranges = {r.key: (r.lo, r.hi) for r in learned}
    policy = QuantPolicy(recipe, constraints or QuantConstraints(), target)
    policy.check_partial()
    prepared, quantizer = _prepare(captured, policy, placement)
    observers = _observers(prepared)
    for obs in observers:
        if obs.spec.role == "activation":
            if obs.spec.key not in stats.tensors:
                raise StatsError(f"statistics have no entry for tensor '{obs.spec.key}'; re-run 'qconvert calibrate'")
            obs.load_stats(stats.tensors[obs.spec.key])
    _feed_weights(prepared)
    for obs in observers:
        if activation_ranges and obs.spec.role == "activation" and obs.spec.key in activation_ranges:
            obs.range_override = activation_ranges[obs.spec.key]
        if weight_ranges and obs.spec.role == "weight" and obs.spec.key in weight_ranges:
            obs.learned_range = weight_ranges[obs.spec.key]
    widened = widen_for_int32_bias(prepared)
    folded = fold_requantization(prepared, policy)
    summaries = tuple(_summary(o) for o in observers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = convert_pt2e(prepared, fold_quantize=True)
    if recipe.weight_rounding == "adaround":
        if calibration_batches is None:
            raise DataError("weight_rounding: adaround needs the calibration data: pass --calib-data (statistics alone are not enough)")
        learn_rounding(captured.graph, converted, calibration_batches, recipe.adaround_samples, recipe.adaround_iterations,
                       target=recipe.adaround_target)
    if recipe.bias_correction == "analytic":
        correct_biases_analytic(captured.graph, converted)
    elif recipe.bias_correction:
        if calibration_batches is None:
            raise DataError("bias_correction needs the calibration data: pass --calib-data (statistics alone are not enough)")
        correct_biases(captured.graph, converted, calibration_batches, recipe.bias_correction_iters, recipe.bias_correction_samples)
    integer_graph, _ = integer_simulation(converted, policy)
    return QuantizedModel(
        graph=converted, captured=captured, recipe=recipe, target=target,
        decisions=dict(quantizer.decisions), qparams=summaries,
        warnings=tuple(policy.warnings) + tuple(w.note() for w in widened),
        float_output_steps=_float_output_steps(converted, stats, QuantPolicy(recipe, policy.constraints, target)),
        requantization=folded,
        integer_graph=integer_graph,
        calibration_batches=calibration_batches,
    )


def _float_output_steps(gm: GraphModule, stats: StatsSet, policy: QuantPolicy) -> tuple[float | None, ...]:
    """For each graph output left in float, the scale it would have as an activation of this
    target (from its calibration statistics), so parity can still be measured in steps."""
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    outs = out_node.args[0] if isinstance(out_node.args[0], (list, tuple)) else [out_node.args[0]]
    steps: list[float | None] = []
    for o in outs:
        tensor_stats = stats.tensors.get(getattr(o, "name", ""))
        if getattr(o, "target", None) == torch.ops.quantized_decomposed.dequantize_per_tensor.default or tensor_stats is None:
            steps.append(None)
            continue
        try:
            obs = QObserver(policy.activation(o.name, module_of(o)), policy.calib)
        except BadInputError:  # the recipe's scheme for that layer is not representable: no step
            steps.append(None)
            continue
        obs.load_stats(tensor_stats)
        steps.append(float(obs.calculate_qparams()[0].flatten()[0]))
    return tuple(steps)


def _summary(o: QObserver) -> QParamSummary:
    scale, zp = o.calculate_qparams()
    s = o.spec.scheme
    return QParamSummary(
        key=o.spec.key, role=o.spec.role, module=o.spec.module, bits=s.bits, mode=s.mode,
        granularity="per_channel" if o.spec.per_channel else "per_tensor", power_of_two=s.power_of_two,
        method=o.spec.method if o.spec.role == "activation" or o.learned_range is None else "learned (QAT)",
        scale_min=float(scale.min()), scale_max=float(scale.max()),
        zero_point=int(zp.flatten()[0]) if zp.numel() == 1 else None,
    )
