"""Predict the device before anyone flashes a board: TI-style accuracy table and exactness checks.

Rows follow TI's accuracy tables: float, simple calibration (min/max ranges,
per-tensor weights), advanced calibration (histogram ranges, plus bias
correction when the core offers it), per-channel depthwise weights, and this
build's own recipe. Each quantized row is the integer simulation with TIDL's
rounding, run on the evaluation data. For this build the simulation is also
compared element by element with the torch Q/DQ graph using TIDL's rounding
(must be identical) and with the core's simulation (torch rounding: the
difference is what the rounding rule alone changes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from qconvert.targets import (
    AccuracyAccumulator,
    Artifact,
    BadInputError,
    CheckContext,
    CompareAccumulator,
    DeviceFigures,
    ExtraChecks,
    ExtraResults,
    QuantizedModel,
    Recipe,
    call_model,
)
from qconvert_tidl.constraints import tidl_constraints
from qconvert_tidl.details import TidlDetails
from qconvert_tidl.intsim import IntSim, UnsupportedGraph
from qconvert_tidl.intsim_compile import compile_graph
from qconvert_tidl.lint import LintFinding, lint_model
from qconvert_tidl.options import TidlOptions
from qconvert_tidl.runtime import run_onnx, run_tflite
from qconvert_tidl.torchsim import tidl_rounding_graph

__all__ = ["DEVICE_FIGURE", "HISTOGRAM_METHODS", "DevicePrediction", "PredictionRow", "TidlChecks", "device_checks"]

#: What the gates judge for this target, as the report names it.
DEVICE_FIGURE = "TIDL device prediction (integer simulation with TIDL rounding)"

HISTOGRAM_METHODS = ("percentile", "entropy", "mse", "aciq_gauss", "aciq_laplace")


@dataclass(frozen=True)
class PredictionRow:
    """One line of the table: what was quantized how, and what the device would score."""

    name: str
    ranges: str
    weights: str
    accuracy: float | None
    sqnr_db: float | None
    top1_agreement: float | None


@dataclass(frozen=True)
class Exactness:
    """This build's simulation against its two torch references, over every output element."""

    elements: int
    mismatches_vs_tidl_rounding_torch: int
    differing_vs_core_simulation: int
    max_lsb_vs_core_simulation: float
    accumulator_bits: int
    bias_over_int16: tuple[str, ...]


class DevicePrediction(BaseModel):
    """The TI-style table (``device_prediction.json``): one row per calibration variant, this build's last."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: list[PredictionRow]
    exactness: Exactness
    rounding: str


class TidlChecks(ExtraResults):
    """TIDL's ``checks`` in report.json: TI model-guideline findings, the TFLite Clip model against the ONNX one,
    and the device prediction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lint: list[LintFinding]
    #: Largest difference of the TFLite Clip model and the ONNX one (None: no TFLite model emitted).
    tflite_vs_onnx_max_abs: float | None = None
    #: None where the integer simulation does not support the graph (the notes say why).
    device_prediction: DevicePrediction | None = None


def device_checks(qmodel: QuantizedModel, artifact: Artifact, options: TidlOptions, ctx: CheckContext) -> ExtraChecks:
    notes: list[str] = []
    findings = lint_model(ctx.model, qmodel.captured)
    notes += [f"TI model guideline: {f.message}" for f in findings]
    vs_onnx = _tflite_vs_onnx(artifact, ctx) if TidlDetails.of(artifact).tflite else None
    results = TidlChecks(lint=list(findings), tflite_vs_onnx_max_abs=vs_onnx)
    try:
        try:
            rows, exact = _predict(qmodel, options, ctx, "bias_correction" in type(qmodel.recipe).model_fields)
        except BadInputError as e:  # bias correction reads calibration data, absent with --stats
            notes.append(f"advanced calibration row without bias correction: {e}")
            rows, exact = _predict(qmodel, options, ctx, False)
    except UnsupportedGraph as e:
        notes.append(f"device prediction unavailable: {e}")
        return ExtraChecks(tuple(notes), results)
    prediction = DevicePrediction(rows=list(rows), exactness=exact,
                                  rounding="requantization half up (TIDL_roundSat), input half away from zero")
    results = results.model_copy(update={"device_prediction": prediction})
    (artifact.directory / "device_prediction.json").write_text(prediction.model_dump_json(indent=1) + "\n")
    (artifact.directory / "device_prediction.md").write_text(_markdown(rows, exact))
    build = rows[-1]
    notes.append(
        f"device predicted, not run: integer simulation with TIDL rounding scores {_pct(build.accuracy)} "
        f"(float {_pct(rows[0].accuracy)}); it matches the TIDL-rounding torch model on "
        f"{exact.elements - exact.mismatches_vs_tidl_rounding_torch}/{exact.elements} output values; "
        "the accuracy column of this target is the float Clip model in onnxruntime; the accuracy, SQNR and top-1 gates "
        "judge the device prediction (tidl/device_prediction.md)"
    )
    if exact.accumulator_bits > 32:
        notes.append(f"an accumulator needs {exact.accumulator_bits} bits, more than TIDL's 32-bit accumulators in 8-bit mode")
    if exact.bias_over_int16:
        notes.append(f"biases beyond int16 (TIDL keeps 16-bit biases in 8-bit mode, not simulated): {', '.join(exact.bias_over_int16)}")
    device = DeviceFigures(DEVICE_FIGURE, build.accuracy, build.sqnr_db, build.top1_agreement)
    return ExtraChecks(tuple(notes), results, device=device)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} %"


def _variants(recipe: Recipe, options: TidlOptions, bias_correction: bool) -> list[tuple[str, str, str, Recipe, TidlOptions]]:
    """(name, ranges, weights, recipe, options) of the TI-style rows, all adapted to TIDL.

    Advanced calibration is a histogram range method plus the core's bias correction
    (TI's "advanced bias calibration") where the recipe model has it.
    """
    method = recipe.calibration.method if recipe.calibration.method in HISTOGRAM_METHODS else "percentile"
    base = recipe.model_copy(update={"on_unsupported": "adapt"})
    per_tensor = base.weights.model_copy(update={"granularity": "per_tensor"})
    per_channel = base.weights.model_copy(update={"granularity": "per_channel"})
    simple = base.model_copy(update={"weights": per_tensor, "calibration": base.calibration.model_copy(update={"method": "minmax"})})
    if "bias_correction" in type(recipe).model_fields:
        simple = simple.model_copy(update={"bias_correction": False})
    adv = base.model_copy(update={"weights": per_tensor, "calibration": base.calibration.model_copy(update={"method": method})})
    if bias_correction:
        adv = adv.model_copy(update={"bias_correction": True})
    dw = adv.model_copy(update={"weights": per_channel})
    adv_name = method + (" + bias correction" if bias_correction else "")
    off, on = options.model_copy(update={"per_channel_depthwise": False}), options.model_copy(update={"per_channel_depthwise": True})
    return [
        ("simple calibration", "minmax", "per-tensor", simple, off),
        ("advanced calibration", adv_name, "per-tensor", adv, off),
        ("per-channel depthwise", adv_name, "per-channel depthwise", dw, on),
    ]


def _predict(qmodel: QuantizedModel, options: TidlOptions, ctx: CheckContext,
             bias_correction: bool) -> tuple[list[PredictionRow], Exactness]:
    float_acc = AccuracyAccumulator()
    batch_size = ctx.references.batch_size if ctx.references is not None else qmodel.recipe.calibration.batch_size
    batches = list(ctx.data.batches(batch_size))
    refs = []
    with torch.no_grad():
        for i, b in enumerate(batches):
            if ctx.references is not None:  # the build's float outputs: the float model is not run again
                ref = ctx.references.outputs[i][0]
            else:
                out = call_model(ctx.model, ctx.data.input_names, [torch.from_numpy(np.array(a)) for a in b.inputs])
                first = out[0] if isinstance(out, (tuple, list)) else out
                assert isinstance(first, torch.Tensor)
                ref = first.numpy()
            refs.append(ref)
            if b.labels is not None:
                float_acc.update(ref, b.labels)
    rows = [PredictionRow("float", "-", "float", float_acc.result(), None, None)]
    for name, ranges, weights, recipe, opts in _variants(qmodel.recipe, options, bias_correction):
        qm = ctx.requantize(recipe, tidl_constraints(opts))
        rows.append(_row(name, ranges, weights, compile_graph(qm.graph, "tidl"), qm, batches, refs))
    row, exact = _this_build(qmodel, batches, refs)
    rows.append(row)
    return rows, exact


def _resolved_weights(qmodel: QuantizedModel) -> str:
    per_channel = any(tq.role == "weight" and tq.per_channel for tq in qmodel.decisions.values())
    return "per-channel depthwise" if per_channel else "per-tensor"


def _row(name: str, ranges: str, weights: str, sim: IntSim, qm: QuantizedModel, batches: list[Any],
         refs: list[np.ndarray]) -> PredictionRow:
    acc, cmp = AccuracyAccumulator(), CompareAccumulator()
    for b, ref in zip(batches, refs):
        (out,) = sim.run(dict(zip(qm.input_names, b.inputs)))[:1]
        cmp.update(ref, out)
        if b.labels is not None:
            acc.update(out, b.labels)
    c = cmp.result()
    return PredictionRow(name, ranges, weights, acc.result(), c.sqnr_db, c.top1_agreement)


def _this_build(qmodel: QuantizedModel, batches: list[Any], refs: list[np.ndarray]) -> tuple[PredictionRow, Exactness]:
    """This build's row, and its simulation against both torch references, in one pass."""
    sim = compile_graph(qmodel.graph, "tidl")
    tidl_torch = tidl_rounding_graph(qmodel.graph)
    scale = qmodel.output_scales()[0] or 1.0
    acc, cmp = AccuracyAccumulator(), CompareAccumulator()
    elements = mismatches = differing = 0
    max_lsb = 0.0
    with torch.no_grad():
        for b, ref in zip(batches, refs):
            (out,) = sim.run(dict(zip(qmodel.input_names, b.inputs)))[:1]
            cmp.update(ref, out)
            if b.labels is not None:
                acc.update(out, b.labels)
            tensors = tuple(torch.from_numpy(np.array(a)) for a in b.inputs)
            ref_tidl = _first(tidl_torch(*tensors)).numpy()
            ref_core = _first(qmodel.graph(*tensors)).numpy()
            elements += out.size
            mismatches += int(np.sum(out != ref_tidl))
            differing += int(np.sum(out != ref_core))
            max_lsb = max(max_lsb, float(np.max(np.abs(out - ref_core))) / scale)
    c = cmp.result()
    row = PredictionRow("this build", qmodel.recipe.calibration.method, _resolved_weights(qmodel), acc.result(), c.sqnr_db,
                        c.top1_agreement)
    exact = Exactness(elements, mismatches, differing, max_lsb, max(sim.accumulator_bits.values(), default=0), _wide_biases(qmodel))
    return row, exact


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _wide_biases(qmodel: QuantizedModel) -> tuple[str, ...]:
    """Layers whose int32 bias does not fit the 16 bits TIDL gives biases in 8-bit mode."""
    wide: list[str] = []
    gm = qmodel.graph
    for n in gm.graph.nodes:
        if n.op == "get_attr":
            value = gm
            for part in str(n.target).split("."):
                value = getattr(value, part)
            if isinstance(value, torch.Tensor) and value.dtype == torch.int32 and value.numel() and int(value.abs().max()) > 2**15 - 1:
                user = next(iter(n.users), None)
                layer = next(iter(user.users), None) if user is not None else None
                wide.append(getattr(layer, "name", n.name))
    return tuple(wide)


def _tflite_vs_onnx(artifact: Artifact, ctx: CheckContext, limit: int = 64) -> float:
    """Largest difference of the TFLite Clip model (ai-edge-litert) and the ONNX one (onnxruntime)."""
    batch = next(ctx.data.batches(limit, limit=limit))
    feeds = dict(zip(artifact.input_names, batch.inputs))
    (onnx_out,) = run_onnx(artifact.path, feeds)[:1]
    (tfl_out,) = run_tflite(artifact.directory / str(TidlDetails.of(artifact).tflite), list(batch.inputs))[:1]
    return float(np.max(np.abs(onnx_out - tfl_out.reshape(onnx_out.shape))))


def _markdown(rows: list[PredictionRow], exact: Exactness) -> str:
    lines = [
        "# TIDL device prediction (not run on a device)",
        "",
        ("Integer simulation of the power-of-two model with TIDL's rounding (requantization: round half up, "
         "TIDL_roundSat; float input: round half away from zero), on the evaluation data."),
        "",
        "| configuration | ranges | weights | accuracy % | SQNR vs float (dB) | top-1 agreement |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        acc = "-" if r.accuracy is None else f"{r.accuracy:.2f}"
        sqnr = "-" if r.sqnr_db is None else f"{r.sqnr_db:.2f}"
        agree = "-" if r.top1_agreement is None else f"{r.top1_agreement:.4f}"
        lines.append(f"| {r.name} | {r.ranges} | {r.weights} | {acc} | {sqnr} | {agree} |")
    lines += [
        "",
        (f"- simulation vs torch Q/DQ model with TIDL rounding: {exact.mismatches_vs_tidl_rounding_torch} of {exact.elements} "
         "output values differ (0 = bit exact)"),
        (f"- simulation vs the core's simulation (torch rounds half to even): {exact.differing_vs_core_simulation} values differ, "
         f"at most {exact.max_lsb_vs_core_simulation:.0f} output steps"),
        f"- widest accumulator: {exact.accumulator_bits} bits (TIDL 8-bit mode: 32)",
        f"- biases beyond int16 (TIDL 8-bit mode keeps 16-bit biases; not simulated): {', '.join(exact.bias_over_int16) or 'none'}",
        ("- not covered: TIDL's layer fusion and its own weight quantization of the Clip model (both land on the same grid "
         "by construction), non power-of-two averages (TIDL uses a fixed-point reciprocal), timing and memory."),
    ]
    return "\n".join(lines) + "\n"
