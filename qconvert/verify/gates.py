"""Check a build report against the recipe's gates and the targets' parity tolerances.

``evaluate`` works on typed measurements, so the build (artifact in its runtime) and
``auto_fallback`` (the torch simulation) judge a variant by the very same rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from qconvert.errors import DataError
from qconvert.recipe.model import Gates, Recipe
from qconvert.verify.numbers import nan_to_none
from qconvert.verify.report_schema import AccumulatorsEntry, Comparison, GateCheckEntry, Report, TargetEntry

__all__ = ["E2E_STEPS_PER_SQRT_DEPTH", "E2E_UNEXPOSED_STEPS_PER_SQRT_DEPTH", "METRIC_TEXT", "GateCheck", "GateMetric", "Measured",
           "accumulator_checks", "check_gates",
           "end_to_end_bound", "evaluate", "gate_checks", "gates_for", "require_measurable"]

GateMetric = Literal["parity_lsb", "layer_parity_lsb", "accuracy_drop_pp", "sqnr_db", "top1_agreement", "accumulator_bits"]

#: The end-to-end difference typical of ``depth`` requantizations when every layer is within the
#: tolerance: one-step differences compounding like a random walk. Reported next to the measured
#: end-to-end difference, gated only where an output is not covered by a compared tensor: it held on MobileNetV2,
#: ResNet-18 and the deep test net
#: (``python -m bench parity_depth``, at most 0.64 x sqrt(depth)), but the zoo's MobileNetV2
#: (transformers, random init, depth 118) is 30 steps end to end with every layer within 1 step:
#: how far rounding differences compound is the network's gain, not the artifact's fidelity.
E2E_STEPS_PER_SQRT_DEPTH = 1.0
#: Where the runtime exposes no intermediate tensors (pytorch's compiled oneDNN kernels, TVM's VM,
#: TIDL's device prediction), only the end-to-end difference can be gated, with this many tolerances
#: per square root of the depth. Measured on the zoo (``make zoo``): pytorch 5 steps on ResNet at depth
#: 12 (1.44 per sqrt), tvm 3 (0.87), wav2vec2 pytorch 2. The margin keeps healthy deep nets passing;
#: a corrupted layer is what the per-layer check of onnx and tflite catches.
E2E_UNEXPOSED_STEPS_PER_SQRT_DEPTH = 2.0


def end_to_end_bound(tolerance_lsb: float, depth: int, layers_checked: bool = True) -> float:
    """Output steps an artifact whose every layer is within ``tolerance_lsb`` typically is from the plain
    simulation after ``depth`` requantizations (see ``E2E_STEPS_PER_SQRT_DEPTH``). ``layers_checked`` False:
    no per-layer check backs it up, and the measured bound for runtimes that expose no tensors applies."""
    per = E2E_STEPS_PER_SQRT_DEPTH if layers_checked else E2E_UNEXPOSED_STEPS_PER_SQRT_DEPTH
    return tolerance_lsb * max(1.0, per * math.sqrt(depth))


def gates_for(recipe: Recipe, target: str) -> Gates:
    """Global gates, with a target's own gates replacing them field by field."""
    own = recipe.target_gates.get(target)
    if own is None:
        return recipe.gates
    merged = recipe.gates.model_dump()
    merged.update({k: v for k, v in own.model_dump().items() if v is not None})
    return Gates(**merged)


def check_gates(recipe: Recipe, report: Report) -> list[str]:
    """One line per failed gate: target, metric, value, limit."""
    return [c.line() for c in gate_checks(recipe, report.targets, report.float.accuracy) if not c.passed]


@dataclass(frozen=True)
class GateCheck:
    """One gate measured on one target's artifact; ``value`` None means it could not be measured (NaN outputs)."""

    target: str
    metric: GateMetric
    value: float | None
    limit: float
    passed: bool
    #: The layer a per-layer gate (accumulator_bits) measured.
    layer: str | None = None
    #: What failed, where a number alone does not say (per-layer parity: the first layer that diverges).
    detail: str = ""
    #: The model output measured, for a model with several outputs (None: the only one).
    output: str | None = None
    #: Which figure was judged: the artifact run here, or a device prediction (TIDL); '' for a simulation.
    figure: str = ""
    #: The figure is a prediction of a device that cannot run here; failure lines say so.
    predicted: bool = False

    def line(self) -> str:
        name, unit, spec, op = METRIC_TEXT[self.metric]
        if self.detail:
            return f"{self.target}: {name}: {self.detail} (limit {self.limit:g}{unit})"
        shown = "not measurable (NaN)" if self.value is None else f"{self.value:{spec}}{unit}"
        where = f"{self.target}: layer '{self.layer}'" if self.layer is not None else self.target
        where = f"{where} output '{self.output}'" if self.output else where
        of = f" ({self.figure})" if self.predicted else ""
        return f"{where}: {name} {shown} {op} limit {self.limit:g}{unit}{of}"

    def entry(self) -> GateCheckEntry:
        """As report.json's ``gates.checks`` holds it."""
        return GateCheckEntry(target=self.target, metric=self.metric, value=self.value, limit=self.limit, passed=self.passed,
                              layer=self.layer, detail=self.detail or None, output=self.output or None, figure=self.figure)


@dataclass(frozen=True)
class Measured:
    """What one artifact (or a simulation of it) scored; None where the data cannot tell."""

    accuracy: float | None
    sqnr_db: float | None
    top1_agreement: float | None
    parity_lsb: float | None = None
    tolerance_lsb: float | None = None
    #: Per-layer parity, where the runtime exposes its quantized tensors: worst layer in steps
    #: (None: a tensor missing or on another grid), the first divergence, the simulation's depth.
    #: SQNR of the artifact against the simulation (for runtimes that expose no tensors: drift vs quantization noise).
    sim_sqnr_db: float | None = None
    layer_checked: bool = False
    layer_parity_lsb: float | None = None
    first_divergence: str = ""
    depth: int = 0
    #: Every output is a compared tensor's dequantized value (nothing after the compared layers).
    outputs_covered: bool = False


# metric -> (words, unit, number format, comparison shown on failure)
METRIC_TEXT: dict[str, tuple[str, str, str, str]] = {
    "parity_lsb": ("parity vs simulation", " LSB", ".3f", ">"),
    "layer_parity_lsb": ("per-layer parity vs simulation", " LSB", ".3f", ">"),
    "accuracy_drop_pp": ("accuracy drop", " pp", ".2f", ">"),
    "sqnr_db": ("SQNR vs float", " dB", ".2f", "<"),
    "top1_agreement": ("top-1 agreement", "", ".4f", "<"),
    "accumulator_bits": ("widest partial sum", " bits", ".0f", ">"),
}
# Reported numbers are rounded; a drop of 0.5000000001 pp must not fail a 0.5 pp gate.
_EPS = 1e-9


def evaluate(gates: Gates, target: str, float_accuracy: float | None, m: Measured) -> list[GateCheck]:
    """Every gate set in ``gates`` that ``m`` can be measured against, passed or not."""
    checks: list[GateCheck] = []
    lsb_limit = gates.max_parity_lsb if gates.max_parity_lsb is not None else m.tolerance_lsb
    if lsb_limit is not None and m.layer_checked:
        ok = m.layer_parity_lsb is not None and m.layer_parity_lsb <= lsb_limit + 1e-3
        checks.append(GateCheck(target, "layer_parity_lsb", m.layer_parity_lsb, lsb_limit, ok, detail="" if ok else m.first_divergence))
        # a float layer after the last compared tensor (TensorRT's logits) is checked end to end, at the depth's reference
        lsb_limit = None if m.outputs_covered else end_to_end_bound(lsb_limit, m.depth)
    elif lsb_limit is not None and m.depth:
        lsb_limit = end_to_end_bound(lsb_limit, m.depth, layers_checked=False)
        if m.parity_lsb is not None and m.parity_lsb > lsb_limit + 1e-3 and _within_drift(m):
            checks.append(GateCheck(target, "parity_lsb", m.parity_lsb, lsb_limit, True,
                                    detail=f"{m.parity_lsb:.3f} LSB, within rounding drift: the artifact is {m.sim_sqnr_db:.1f} dB "
                                           f"from the simulation, {m.sqnr_db:.1f} dB from float"))
            lsb_limit = None
    if lsb_limit is not None and m.parity_lsb is not None:
        checks.append(GateCheck(target, "parity_lsb", m.parity_lsb, lsb_limit, m.parity_lsb <= lsb_limit + 1e-3))
    if gates.max_accuracy_drop is not None and float_accuracy is not None and m.accuracy is not None:
        drop = float_accuracy - m.accuracy
        checks.append(GateCheck(target, "accuracy_drop_pp", drop, gates.max_accuracy_drop, drop <= gates.max_accuracy_drop + _EPS))
    if gates.min_sqnr_db is not None:
        v = nan_to_none(m.sqnr_db)
        checks.append(GateCheck(target, "sqnr_db", v, gates.min_sqnr_db, v is not None and v >= gates.min_sqnr_db - _EPS))
    if gates.min_top1_agreement is not None and m.top1_agreement is not None:
        v = m.top1_agreement
        checks.append(GateCheck(target, "top1_agreement", v, gates.min_top1_agreement, v >= gates.min_top1_agreement - _EPS))
    return checks


def gate_checks(recipe: Recipe, targets: Mapping[str, TargetEntry], float_accuracy: float | None) -> list[GateCheck]:
    """All gates of every executed target of a build (targets not run here have nothing to check).

    Parity and SQNR gates judge every model output; accuracy and top-1 agreement judge the
    first output (the primary head: logits), the only one labels and classes refer to.
    """
    checks: list[GateCheck] = []
    for name, t in targets.items():
        checks += accumulator_checks(name, t.accumulators)
        if not t.executed or t.vs_simulation is None or t.vs_float is None:
            continue
        outputs: list[tuple[str | None, Comparison, Comparison]] = \
            [(o.name, o.vs_simulation, o.vs_float) for o in t.outputs or ()] or [(None, t.vs_simulation, t.vs_float)]
        device = t.device  # a device that cannot run here, predicted (TIDL): its figures are what ships
        run_here = f"artifact in {t.executed_in or t.runtime}"
        for i, (oname, sim, flt) in enumerate(outputs):
            primary = i == 0
            predicted = primary and device is not None
            if device is not None and predicted:
                acc, sqnr, top1 = device.accuracy, device.sqnr_db, device.top1_agreement
            else:
                acc, sqnr, top1 = t.accuracy if primary else None, flt.sqnr_db, flt.top1_agreement if primary else None
            m = _measured(t, acc, sqnr, top1, sim.max_lsb_error, sim.sqnr_db)
            label = oname if len(outputs) > 1 else None
            found = evaluate(gates_for(recipe, name), name, float_accuracy, m)
            # per-layer parity covers the whole graph once; each output adds its own end-to-end checks
            for c in found:
                if not primary and c.metric == "layer_parity_lsb":
                    continue
                on_device = predicted and c.metric in ("accuracy_drop_pp", "sqnr_db", "top1_agreement")
                figure = device.label if device is not None and on_device else run_here
                checks.append(replace(c, output=label, figure=figure, predicted=on_device))
    return checks


def accumulator_checks(target: str, entry: AccumulatorsEntry | None) -> list[GateCheck]:
    """One check per layer with an accumulator limit (recipe ``accumulator_bits``): its widest
    partial sum on the calibration data must fit. Simulation only, so targets not run here count."""
    if entry is None:
        return []
    return [GateCheck(target, "accumulator_bits", float(w.partial_bits), float(w.limit), not w.overflows, w.layer)
            for w in entry.layers if w.limit is not None]


def _measured(t: TargetEntry, acc: float | None, sqnr: float | None, top1: float | None, parity_lsb: float | None,
              sim_sqnr: float | None) -> Measured:
    """One output's figures, with the target's per-layer parity (where its runtime exposes tensors) or its depth."""
    m = Measured(acc, sqnr, top1, parity_lsb, t.tolerance_lsb, sim_sqnr_db=sim_sqnr, depth=t.parity_depth or 0)
    lp = t.layer_parity
    if lp is None:
        return m
    first = lp.first_divergence
    return replace(m, layer_checked=True, layer_parity_lsb=lp.max_lsb_error, depth=lp.depth, outputs_covered=lp.outputs_covered,
                   first_divergence=f"first divergence at {first.text}" if first is not None else "")


#: Where a runtime exposes no tensors and a high-gain network amplifies one-step rounding differences
#: past the step bound, the artifact still passes while its distance to the simulation is at most
#: half (in amplitude) its distance to float: rounding drift between two correct int8 implementations
#: is a fraction of the quantization noise both share, a wrong scale or a missing Q/DQ is not.
DRIFT_MARGIN_DB = 6.0


def _within_drift(m: Measured) -> bool:
    return m.sim_sqnr_db is not None and m.sqnr_db is not None and m.sim_sqnr_db >= m.sqnr_db + DRIFT_MARGIN_DB


def require_measurable(recipe: Recipe, labelled: bool, data: str) -> None:
    """Refuse, before any work, an accuracy gate the evaluation data cannot measure.

    Raises:
        DataError: a ``max_accuracy_drop`` gate (global or per target) and no labels in ``data``.
    """
    if labelled:
        return
    wanted = [("gates", recipe.gates)] + [(f"target_gates.{k}", g) for k, g in recipe.target_gates.items()]
    for where, g in wanted:
        if g.max_accuracy_drop is not None:
            raise DataError(f"recipe {where}.max_accuracy_drop needs labelled evaluation data, but {data} has no labels "
                            "(give a .npz with 'y', or an image folder with one sub-folder per class)")
