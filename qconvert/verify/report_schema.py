"""report.json as pydantic models: the build constructs them, every reader reads them, and
``schemas/report.schema.json`` is generated from them.

The pipeline and the plugins build these objects directly (``Report``, one ``TargetEntry`` per
target); gates, markdown, html, the CLI and the Python API read their attributes, and
report.json is ``Report.model_dump_json``. Reading a report.json back is
``Report.model_validate_json``. Floats are ``JsonFloat`` (``qconvert.verify.numbers``): a float
in Python, a number or "inf"/"-inf"/"nan" in JSON (the SQNR of an exact artifact is +inf).
Torch-free: ``qconvert verify`` may import it on a board.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny

from qconvert.verify.numbers import JsonFloat, nan_to_none

if TYPE_CHECKING:
    from qconvert.verify import metrics

__all__ = ["AccumulatorsEntry", "Calibration", "Comparison", "EvalInfo", "ExtraResults", "Fallback", "FloatInfo", "GateCheckEntry",
           "GatesEntry", "ImportedGridEntry", "LatencyEntry", "LayerParityEntry", "Layers", "OptimizeForEntry", "OutputEntry",
           "PrecisionComparison", "PrecisionRow", "RankedLayer", "Report", "SensitivityRanking", "TargetEntry", "TimingsEntry",
           "report_json_schema",
           "report_json_schema_text"]

Num = JsonFloat


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Comparison(_Strict):
    """One output compared with a reference over the evaluation set (NaN, a figure the data cannot tell, is None)."""

    samples: int = Field(..., description="Samples compared.")
    sqnr_db: Num | None = Field(..., description="Signal-to-quantization-noise ratio, dB (\"inf\" when equal, null when NaN).")
    max_abs_error: Num | None = Field(..., description="Largest absolute difference.")
    cosine: Num | None = Field(..., description="Cosine similarity of the flattened outputs.")
    top1_agreement: Num | None = Field(..., description="Fraction of samples whose arg-max matches; null when not a classifier.")
    max_lsb_error: Num | None = Field(..., description="max_abs_error in output quantization steps; null without a step.")

    @classmethod
    def of(cls, c: metrics.Comparison) -> Comparison:
        return cls(samples=c.samples, sqnr_db=nan_to_none(c.sqnr_db), max_abs_error=nan_to_none(c.max_abs_error),
                   cosine=nan_to_none(c.cosine), top1_agreement=nan_to_none(c.top1_agreement), max_lsb_error=nan_to_none(c.max_lsb_error))


class LayerSqnr(_Strict):
    key: str = Field(..., description="Tensor key (producing node), as in stats/ and the manifest.")
    module: str = Field(..., description="Module that produces the tensor ('' for the model input or functional ops).")
    sqnr_db: Num | None = Field(..., description="SQNR of the dequantized activation vs the float one, dB.")


class HistBins(_Strict):
    lo: Num = Field(..., description="Left edge of the first bar.")
    hi: Num = Field(..., description="Right edge of the last bar.")
    counts: list[int] = Field(..., description="Calibration values per equal-width bar (exact sums of the stats/ histogram bins).")


class LayerHistogram(_Strict):
    key: str = Field(..., description="Tensor key.")
    module: str = Field(..., description="Producing module.")
    method: str = Field(..., description="Range method that chose the clip range.")
    clip: list[Num] = Field(..., min_length=2, max_length=2, description="Chosen clip range [lo, hi].")
    grid: list[Num] = Field(..., min_length=2, max_length=2,
                            description="Range the integer grid represents [lo, hi] (scale and zero point).")
    observed: list[Num] = Field(..., min_length=2, max_length=2, description="Observed [min, max] during calibration.")
    bins: HistBins


class Layers(_Strict):
    samples: int = Field(..., description="Evaluation samples run through the float and the quantized graph.")
    layers: list[LayerSqnr] = Field(..., description="Every quantized activation, worst SQNR first.")
    histograms: list[LayerHistogram] = Field(..., description="Calibration histograms of the worst layers.")


class LayerParityRow(_Strict):
    node: str = Field(..., description="Quantize node of the simulation (QuantizedModel.graph).")
    tensor: str = Field(..., description="Activation it quantizes (producing node), as in stats/.")
    op: str = Field(..., description="Op that produces the activation ('input' for a model input).")
    module: str = Field(..., description="Producing module ('' for functional ops).")
    runtime_tensor: str | None = Field(..., description="The artifact's tensor holding it; null when missing or not exposed.")
    status: Literal["ok", "diverged", "grid", "missing", "not_exposed"] = Field(
        ..., description="ok / diverged (over the tolerance) / grid (the artifact's scale, zero point or shape differ) / "
        "missing (emitted, no longer in the artifact: a dropped Q/DQ pair) / not_exposed (the runtime fused it away).")
    max_steps: Num | None = Field(..., description="Largest difference in this tensor's steps vs the simulation fed the runtime's inputs.")
    steps: Num | None = Field(..., description="Difference all but 0.1 % of the values stay within, whole steps: what is judged.")
    off_fraction: Num | None = Field(..., description="Fraction of values more than the tolerance off.")
    differ_fraction: Num | None = Field(..., description="Fraction of values on another integer than the simulation's.")
    detail: str = Field(..., description="What differs, for status grid.")


class FirstDivergence(LayerParityRow):
    text: str = Field(..., description="One line naming the layer, its op and its error.")


class LayerParityEntry(_Strict):
    tolerance_lsb: Num = Field(..., description="Per-layer tolerance, steps.")
    samples: int = Field(..., description="Evaluation samples run with the runtime's intermediates exposed.")
    depth: int = Field(..., description="Requantizations on the longest input-to-output path of the simulation.")
    compared: int = Field(..., description="Quantized tensors compared.")
    max_lsb_error: Num | None = Field(..., description="Worst layer's 99.9th-percentile difference (steps), the gated figure; "
                                      "null when a tensor is missing or on another grid.")
    outputs_covered: bool = Field(..., description="Every model output is the dequantized value of a compared tensor or a float "
                                  "output compared fed the runtime's last quantized tensors (row output_<i>); when not, the "
                                  "end-to-end difference is gated too (within end_to_end_bound_lsb).")
    end_to_end_bound_lsb: Num = Field(..., description="End-to-end difference typical of this depth when every layer is within "
                                      "the tolerance (qconvert.verify.gates.end_to_end_bound); reported, not gated.")
    first_divergence: FirstDivergence | None = Field(..., description="First layer in graph order that fails; null when none.")
    layers: list[LayerParityRow] = Field(..., description="Every activation quantize node, in graph order, then each float "
                                         "output computed after them (node output_<i>).")


class BatchLatency(_Strict):
    int8_ms: Num = Field(..., description="Median ms of one run of the artifact.")
    float_ms: Num = Field(..., description="Median ms of one run of the float model in the same runtime.")
    speedup: Num | None = Field(..., description="float_ms / int8_ms.")


class LatencyEntry(_Strict):
    runtime: str = Field(..., description="Runtime both models ran in, with its version.")
    by_batch: dict[str, BatchLatency] = Field(..., description="Per batch size (as a string key).")
    int8_nodes: int | None = Field(..., description="Compute nodes the runtime ran in integer arithmetic; null where it cannot tell.")
    float_nodes: int | None = Field(..., description="Compute nodes the runtime ran in float; null where it cannot tell.")
    float_ops: list[str] = Field(..., description="Op types of the float compute nodes.")


class FastTypesEntry(_Strict):
    activations: str
    weights: str
    weight_granularity: str
    why: str = Field(..., description="The kernel behaviour behind the choice, as the target declares it.")


class OptimizeForEntry(_Strict):
    optimize_for: Literal["speed", "accuracy"]
    source: Literal["recipe", "target default"]
    device: str | None = Field(..., description="Device the target's fast types are for; null where it declares none.")
    fast_types: FastTypesEntry | None
    activations: str = Field(..., description="Activation modes the quantized tensors got (after the target's constraints), "
                             "one mode, or each with its tensor count where they differ.")
    weights: str = Field(..., description="Weight modes and granularities the quantized weights got, likewise.")
    placement: str = Field(..., description="Q/DQ placement rules used.")


class AccumulatorLayer(_Strict):
    layer: str = Field(..., description="Quantized conv/linear layer.")
    fan_in: int = Field(..., description="Products summed per output.")
    final_bits: int = Field(..., description="Signed bits of the widest final sum (products plus bias) on the data.")
    partial_bits: int = Field(..., description="Signed bits of the widest partial sum in any order of additions.")
    limit: int | None = Field(..., description="The layer's accumulator_bits; null: not checked.")
    overflows: bool = Field(..., description="partial_bits > limit.")


class AccumulatorsEntry(_Strict):
    data: Literal["calibration", "evaluation"] = Field(..., description="Data the simulation ran on (evaluation when built from --stats).")
    layers: list[AccumulatorLayer]
    overflowing: list[str] = Field(..., description="Layers whose widest partial sum needs more bits than their limit.")


class RequantizedLayer(_Strict):
    layer: str
    multiplier_bits: int
    rounding: str
    channels: int = Field(..., description="Ratios (output channels) approximated.")
    max_relative_error: Num = Field(..., description="Largest |approximated / exact ratio - 1| over the channels.")
    arithmetic: str = Field("float", description="What the simulation computes for the layer: float (the Q/DQ graph), fp32 "
                            "(XNNPACK's requantization) or gemmlowp (TFLite's reference kernels), on the exact int32 accumulator.")


class OutputEntry(_Strict):
    """One model output of one artifact (models return tuples, dicts, ModelOutputs: each tensor is an output)."""

    name: str = Field(...,
                      description="Path of the tensor in the model's output ('logits', 'hidden_states.2'; 'output' for a bare tensor).")
    output_scale: Num | None = Field(..., description="Scale of the output's final dequantize; null for a float output.")
    parity_step: Num | None = Field(..., description="Step max_lsb_error is counted in.")
    vs_simulation: Comparison
    vs_float: Comparison


class DeviceEntry(_Strict):
    label: str = Field(..., description="What the figures are, e.g. the TIDL integer device prediction.")
    accuracy: Num | None
    sqnr_db: Num | None
    top1_agreement: Num | None


class ExtraResults(BaseModel):
    """Base of a plugin's own results (``Target.extra_checks``), written as the target's ``checks``.

    A plugin subclasses it with its fields (and may forbid extra keys); read back from report.json
    without the plugin, its fields are kept as extra attributes of this base.
    """

    model_config = ConfigDict(extra="allow", frozen=True)


class GridChangeEntry(_Strict):
    key: str
    module: str
    role: str
    scale_change: Num = Field(..., description="Largest |new scale / imported scale - 1| over channels.")
    was: str
    now: str


class ImportedGridEntry(_Strict):
    """Grids imported from another tool's quantized model, and which ones this target changed."""

    tool: str
    tensors: int
    changed: list[GridChangeEntry]
    notes: list[str]


class TargetEntry(_Strict):
    """One target's artifact and how it compared."""

    artifact: str = Field(..., description="Main artifact file, relative to OUT.")
    runtime: str = Field(..., description="Runtime and version used to verify.")
    executed: bool = Field(..., description="Whether the artifact ran here.")
    executed_in: str | None = Field(..., description="What ran it when not the target's own runtime.")
    notes: list[str] = Field(..., description="Notes and adaptations.")
    tolerance_lsb: Num = Field(..., description="Declared artifact-vs-simulation tolerance, output steps.")
    size_bytes: int | None = Field(..., description="Artifact file size.")
    accuracy: Num | None = Field(None, description="Top-1 accuracy of the artifact, %, when labelled.")
    simulation_accuracy: Num | None = Field(None, description="Top-1 accuracy of the torch simulation, %.")
    output_scale: Num | None = Field(None, description="Scale of the first output's dequantize.")
    parity_step: Num | None = Field(None, description="Step parity is measured in (of the output farthest from the simulation).")
    vs_simulation: Comparison | None = Field(None, description="Artifact vs the torch Q/DQ simulation: the output farthest from it, in "
                                                               "its own steps.")
    vs_float: Comparison | None = Field(None, description="Artifact vs the float model: the first (primary) output.")
    outputs: list[OutputEntry] | None = Field(None, description="Every model output, in the model's order; each is verified and gated.")
    latency: LatencyEntry | None = Field(None,
                                         description="Latency of the artifact against the float model in the same runtime, when measured.")
    latency_skipped: bool = Field(False, description="True when the build ran with --no-latency.")
    optimize_for: OptimizeForEntry | None = Field(None, description="What the target optimised for and the types that gave.")
    recipe_hash: str | None = Field(
        None, pattern="^[0-9a-f]{64}$", description="sha256 of the effective recipe this target quantized with (after optimize_for); "
        "the same as its manifest's recipe_hash.")
    gated_on: str | None = Field(None, description="Which figures the accuracy, SQNR and top-1 gates judged: the artifact run here, "
                                 "or a device prediction where the device cannot run here (TIDL).")
    device: DeviceEntry | None = Field(None, description="The device prediction's figures, where the target gives one (TIDL).")
    layers: Layers | None = Field(None, description="Per-layer SQNR and worst-layer histograms (simulation vs float).")
    accumulators: AccumulatorsEntry | None = Field(None,
                                                   description="Widest accumulators per layer (recipe accumulator_bits), when checked.")
    requantization: list[RequantizedLayer] | None = Field(None, description="Layers whose requantization ratios are fixed-point (recipe "
                                                                            "requantize).")
    parity_depth: int | None = Field(None, description="Requantizations on the longest path of the simulation: the end-to-end parity "
                                                       "bound grows with its square root.")
    layer_parity: LayerParityEntry | None = Field(
        None, description="Per-layer parity: each quantized tensor of the runtime vs the simulation of that layer fed the "
        "runtime's inputs; null where the target exposes no intermediates (checked end to end only).")
    imported_grid: ImportedGridEntry | None = Field(None, description="Grids imported from another tool (a quantized model as --model).")
    checks: SerializeAsAny[ExtraResults] | None = Field(None, description="The plugin's own checks (Target.extra_checks), "
                                                        "shaped by the plugin.")


class GateCheckEntry(_Strict):
    target: str
    metric: Literal["parity_lsb", "layer_parity_lsb", "accuracy_drop_pp", "sqnr_db", "top1_agreement", "accumulator_bits"]
    value: Num | None = Field(..., description="Measured value; null when not measurable.")
    limit: Num
    passed: bool
    layer: str | None = Field(None, description="Layer of a per-layer gate (accumulator_bits).")
    detail: str | None = Field(None, description="What failed where a value alone does not say (the first layer that diverges).")
    output: str | None = Field(None, description="Model output measured, when the model has several.")
    figure: str = Field("", description="Which figure was judged: the artifact in its runtime, or a device prediction (TIDL).")


class GatesEntry(_Strict):
    passed: bool
    failures: list[str] = Field(..., description="One line per failed gate: target, metric, value, limit.")
    checks: list[GateCheckEntry] = Field([], description="Every gate checked.")


class SimulatedScore(_Strict):
    accuracy: Num | None
    sqnr_db: Num | None
    top1_agreement: Num | None


class RankedLayer(_Strict):
    """One candidate layer of a sensitivity ranking."""

    layer: str
    op: str
    loss: Num = Field(..., description="Accuracy points lost vs float, or minus the SQNR, with only this layer quantized.")
    regain: Num = Field(..., description="Accuracy points or dB regained over the full quantization with only this layer kept.")
    regain_rank: int = Field(..., description="1: the best fallback candidate.")
    only_quantized: SimulatedScore
    all_but: SimulatedScore


class SensitivityRanking(_Strict):
    """'qconvert sensitivity --json', and auto_fallback's ranking: layers most fragile first."""

    metric: Literal["accuracy", "sqnr"]
    keep: str
    samples: int
    float_accuracy: Num | None
    quantized: SimulatedScore = Field(..., description="The full quantization.")
    layers: list[RankedLayer]


class FallbackScreen(_Strict):
    target: str
    simulated: SimulatedScore = Field(..., description="The variant quantized with this target's plan (schemes, constraints, placement).")
    passed: bool = Field(..., description="This target's gates pass on the simulation.")


class FallbackStepEntry(_Strict):
    layers: list[str]
    simulated: SimulatedScore = Field(..., description="The simulation of the target farthest from float (lowest SQNR).")
    simulation_passed: bool = Field(..., description="Every target's simulation passes its gates.")
    targets: list[FallbackScreen] = Field(..., description="Each target's simulation of this variant.")
    built: bool | None = Field(..., description="null: not built (the simulation already failed the gates).")
    failures: list[str]


class Fallback(_Strict):
    metric: Literal["accuracy", "sqnr"]
    keep: Literal["float", "int16"]
    max_layers: int
    layers: list[str] = Field(..., description="Layers kept at higher precision, in the order added.")
    passed: bool
    recipe_file: str | None = Field(..., description="Recipe written into OUT with the layers spelled out.")
    screened: Literal["per target"] = Field(..., description="Each variant is simulated under each target's plan and gates.")
    ranked_on: str | None = Field(..., description="Target whose plan the layers were ranked under; null: no ranking was needed.")
    steps: list[FallbackStepEntry]
    ranking: SensitivityRanking | None = Field(..., description="The sensitivity ranking (as 'qconvert sensitivity --json' writes it).")


class PrecisionRow(_Strict):
    activation_bits: int
    artifact: str | None = Field(..., description="Artifact of this width, relative to OUT; null when refused.")
    executed: bool
    accuracy: Num | None
    accuracy_drop_pp: Num | None
    simulation_accuracy: Num | None
    sqnr_db: Num | None = Field(..., description="SQNR of the artifact vs float, dB.")
    top1_agreement: Num | None
    parity_lsb: Num | None = Field(..., description="Artifact vs its simulation, output steps.")
    tolerance_lsb: Num | None
    adapted: list[str] = Field(..., description="The first adaptation note, where the target changed the scheme.")
    refused: str | None = Field(..., description="Why the target cannot build this width (on_unsupported: error).")


class PrecisionComparison(_Strict):
    activation_bits: list[int]
    targets: dict[str, list[PrecisionRow]]


class Calibration(_Strict):
    ranges: str
    stats: str
    method: str
    samples: int | None
    tensors: int


class EvalInfo(_Strict):
    data: str
    samples: int
    held_out: bool
    labelled: bool


class FloatInfo(_Strict):
    accuracy: Num | None


class TimingsEntry(_Strict):
    """Wall seconds of the build per phase (capture, calibration, float_reference, fallback_search, layer_report,
    total) and per target per phase (quantize, emit, runtime_run, simulation, layer_parity, golden, latency, extra_checks, accumulators)."""

    unit: Literal["s"] = "s"
    phases: dict[str, float] = Field(..., description="Seconds per build phase; a phase run several times adds up.")
    targets: dict[str, dict[str, float]] = Field(..., description="Per target: seconds per phase.")
    jobs: int = Field(1, description="Worker processes that emitted and verified the targets side by side (--jobs); 1: one "
                                     "after the other in the build's process. Per-target seconds are each worker's own clock.")


class Report(_Strict):
    """report.json of one ``qconvert build``."""

    qconvert_version: str
    torch_version: str
    model: str
    recipe: str
    recipe_hash: str = Field(..., pattern="^[0-9a-f]{64}$", description="sha256 of the validated recipe, before any target adapted it; "
                             "each target's own effective recipe hash is targets.<name>.recipe_hash.")
    recipe_file_sha256: str | None = Field(None, pattern="^[0-9a-f]{64}$", description="sha256 of the recipe file's bytes, as committed.")
    warnings: list[str] = Field([], description="What the user should know that did not stop the build.")
    inputs: dict[str, list[int]] = Field(..., description="Per-sample input shapes (batch excluded).")
    calibration: Calibration
    eval: EvalInfo
    float: FloatInfo
    targets: dict[str, TargetEntry]
    gates: GatesEntry
    fallback: Fallback | None = None
    timings: TimingsEntry | None = Field(None, description="Where the build's time went (seconds per phase and per target).")
    precision: PrecisionComparison | None = Field(None, description="Activation widths side by side (--compare-precision).")


def report_json_schema() -> dict[str, object]:
    schema = Report.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://qconvert.dev/schemas/report.schema.json"
    return schema


def report_json_schema_text() -> str:
    """The exact text committed as schemas/report.schema.json."""
    return json.dumps(report_json_schema(), indent=2, sort_keys=True) + "\n"
