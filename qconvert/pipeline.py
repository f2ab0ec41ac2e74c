"""The build: recipe -> capture -> calibrate once -> per target quantize, emit, verify.

Everything is written to a temporary directory next to OUT and moved into place
at the end, so a failed build never leaves a half-written OUT behind.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from qconvert import warm_up
from qconvert.core.distributed import Shard, current_shard, gather_stats, shard_batches
from qconvert.core.quantize import QuantizedModel, calibrate
from qconvert.core.stats import StatsSet
from qconvert.errors import DataError, RecipeError, TargetUnavailableError
from qconvert.imports.distiller import is_distiller_stats, read_distiller_stats
from qconvert.imports.grid import grid_changes, target_stats
from qconvert.imports.registry import Importer, detect
from qconvert.imports.session import import_for_build
from qconvert.imports.session import open_model as open_model_ref
from qconvert.io.data import Dataset
from qconvert.io.outdir import check_out_dir, staged_dir
from qconvert.io.sources import DataSource, ModelSource, RecipeSource, data_names, model_label, open_data, open_model, open_recipe
from qconvert.parallel import Task, auto_jobs, ran_targets_here
from qconvert.progress import track
from qconvert.qat.build import open_for_build
from qconvert.qat.checkpoint import is_checkpoint_ref
from qconvert.quiet import save_log
from qconvert.recipe.load import recipe_hash
from qconvert.recipe.model import Recipe
from qconvert.recipe.plugins import check_recipe_targets, gate_warnings
from qconvert.sensitivity.fallback import run_fallback
from qconvert.session import Session, example_inputs, prepare_session, torch_batches
from qconvert.targets.base import Artifact, CheckContext, Target, TargetOptions
from qconvert.targets.plan import TargetPlan, plan_for, planner
from qconvert.targets.registry import TargetRegistry
from qconvert.targets_pool import TargetDone, layers_task, run_targets
from qconvert.timings import Timings
from qconvert.verify.accumulators import accumulator_entry, wants_accumulator_check
from qconvert.verify.effective import effective_schemes, file_sha256
from qconvert.verify.entries import RunFigures, device_entry, imported_grid_entry, optimize_for_entry, requantization_entries
from qconvert.verify.gates import GateCheck, gate_checks, require_measurable
from qconvert.verify.layer_parity import depth_of, layer_parity
from qconvert.verify.manifest import ArtifactRecord, Manifest, ManifestParity, ManifestTolerance, QuantizationEntry, write_manifest
from qconvert.verify.precision import compare_precision
from qconvert.verify.references import FloatReferences
from qconvert.verify.report import write_reports
from qconvert.verify.report_schema import (
    Calibration,
    EvalInfo,
    Fallback,
    FloatInfo,
    GatesEntry,
    PrecisionComparison,
    Report,
    TargetEntry,
    TimingsEntry,
)
from qconvert.verify.run_artifact import verify_outputs, write_golden
from qconvert.version import __version__

__all__ = ["BuildRequest", "BuildResult", "build"]

#: Batch sizes at which every runnable artifact is timed against the float model.
LATENCY_BATCHES = (1, 16)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class BuildRequest:
    #: A reference (``file.py:factory``, ``file.pt2``, a QAT checkpoint) or a model in memory (see ``qconvert.io.sources``).
    model: ModelSource
    #: None only with a QAT checkpoint as ``model``, which holds its recipe.
    recipe: RecipeSource | None
    calib_data: DataSource | None
    out: Path
    targets: tuple[str, ...]
    weights: Path | None = None
    eval_data: DataSource | None = None
    input_shape: tuple[int, ...] | None = None
    stats: Path | None = None
    #: Time each artifact against float in its runtime (seconds per target; off for CI jobs that gate on accuracy only).
    latency: bool = True
    #: Activation widths built side by side (``--compare-precision``); None: the recipe's ``compare_precision``.
    compare_precision: tuple[int, ...] | None = None
    #: Worker processes emitting and verifying targets side by side (``--jobs``); 1: one after the other here; None: auto.
    jobs: int | None = None


@dataclass(frozen=True)
class BuildResult:
    out: Path
    #: None on a secondary torchrun rank.
    report: Report | None
    gate_failures: tuple[str, ...] = field(default=())
    #: True on a secondary torchrun rank, which only contributed statistics.
    secondary: bool = False
    #: Things the user should know that did not stop the build (a target_gates entry for a target not built).
    warnings: tuple[str, ...] = field(default=())


def build(req: BuildRequest, registry: TargetRegistry, progress: Progress = lambda _: None) -> BuildResult:
    """Run a whole build; raises ``GateFailedError`` after OUT is written when a gate fails."""
    check_out_dir(req.out, "report.json")
    targets = _resolve_targets(req, registry)
    warm = warm_up.start(targets)  # in a background thread while this one captures, calibrates and quantizes
    timings, started = Timings(), time.perf_counter()
    with timings.phase("capture"):
        session = _session(req)
    recipe = session.recipe
    sections = check_recipe_targets(recipe, session.recipe_path, registry)
    options = {t.name: sections.options.get(t.name) or t.parse_options(None, str(session.recipe_path)) for t in targets}
    warnings = gate_warnings(recipe, [t.name for t in targets])
    for w in warnings:
        progress(f"warning: {w}")
    eval_data = open_data(req.eval_data, session.captured.input_names, recipe.preprocess) if req.eval_data is not None else session.calib
    if session.calib is None and req.stats is None and session.learned is None:
        raise DataError("no calibration data: pass --calib-data, or --stats from an earlier 'qconvert calibrate'")
    if eval_data is None:
        raise DataError("no data to verify on: pass --eval-data")
    require_measurable(recipe, eval_data.labels is not None, str(eval_data.path))

    shard = current_shard()
    jobs = req.jobs if req.jobs is not None else auto_jobs(len(targets))
    with timings.phase("calibration"):
        stats = _stats(session, req, progress, shard)
    if stats is None:  # a secondary torchrun rank: its statistics went to rank 0
        return BuildResult(req.out, None, secondary=True)
    with staged_dir(req.out) as tmp:  # moved into place at the end; removed on any error or Ctrl-C
        stats.save(tmp / "stats")
        with timings.phase("float_reference"):  # the only float pass over the evaluation data
            refs = FloatReferences.compute(session.model, eval_data, recipe.calibration.batch_size)
        entries: dict[str, TargetEntry] = {}

        def build_all(s: Session) -> list[GateCheck]:
            quantized: dict[str, _Quantized] = {}
            for t in targets:
                shutil.rmtree(tmp / t.name, ignore_errors=True)  # an earlier auto_fallback attempt
                progress(f"{t.name}: quantize")
                quantized[t.name] = _quantize_target(t, options[t.name], s, stats, timings)
            qmodels = {name: q.qmodel for name, q in quantized.items()}
            warm.wait()  # before any target emits, and before workers fork
            ran = run_targets(targets, [_target_task(quantized[t.name], s, eval_data, tmp, req.latency, refs) for t in targets],
                              layers_task(qmodels, stats, eval_data, s.recipe.calibration.batch_size), jobs, progress)
            timings.jobs = max(timings.jobs, ran.jobs)
            for t in targets:  # in the order asked for, however the workers finished
                entries[t.name] = ran.done[t.name].entry.model_copy(update={"layers": ran.layers.layers[t.name]})
                for phase, seconds in ran.done[t.name].seconds.items():
                    timings.add(phase, seconds, t.name)
            timings.add("layer_report", ran.layers.seconds)  # one float graph pass for every target
            return gate_checks(s.recipe, entries, refs.accuracy)

        fallback_entry: Fallback | None = None
        if recipe.auto_fallback is None:
            checks = build_all(session)
        else:
            plans = {t.name: planner(t, options[t.name]) for t in targets}  # the search screens every variant per target
            weight_bits = min(p(recipe).constraints.max_weight_bits for p in plans.values())  # int16 keeps: 16x8 on tflite
            with timings.phase("fallback_search"):
                checks, fallback = run_fallback(session, stats, eval_data, plans, build_all, tmp, str(session.recipe_path),
                                                references=refs, keep_weight_bits=weight_bits)
            fallback_entry = fallback.entry()
        widths = req.compare_precision or recipe.compare_precision
        precision = compare_precision(
            widths, recipe, refs.accuracy, entries, tmp,
            lambda r, name, d: _build_target(registry.get(name), options[name], replace(session, recipe=r), stats, eval_data, d,
                                             False, refs, timings)[0]) if widths else None
        failures = [c.line() for c in checks if not c.passed]
        timings.add("total", time.perf_counter() - started)
        report = _report(req, session, stats, eval_data, float_accuracy=refs.accuracy, warnings=list(warnings), targets=entries,
                         gates=GatesEntry(passed=not failures, failures=failures, checks=[c.entry() for c in checks]),
                         fallback=fallback_entry, precision=precision, timings=timings.entry())
        write_reports(tmp, report)
        save_log(tmp)
    return BuildResult(req.out, report, tuple(failures), warnings=tuple(warnings))


def _resolve_targets(req: BuildRequest, registry: TargetRegistry) -> list[Target]:
    targets = [registry.get(n) for n in dict.fromkeys(req.targets)]
    for t in targets:
        av = t.available()
        if not av.ok:
            raise TargetUnavailableError(f"target '{t.name}' is unavailable here: {av.reason}")
    return targets


def _session(req: BuildRequest) -> Session:
    if isinstance(req.model, str) and is_checkpoint_ref(req.model):
        ck = open_for_build(req.model, req.recipe, weights=req.weights, calib_data=req.calib_data, stats=req.stats)
        return Session(ck.recipe, ck.recipe_path, ck.model, ck.captured, None, learned=ck.learned)
    if isinstance(req.model, str):
        opened = open_model_ref(req.model, req.weights)
        model, importer = opened.model, opened.importer
    else:  # in memory (the Python API): a copy of the caller's model
        model = open_model(req.model, req.weights)
        importer = detect(model)
    if importer is not None:  # quantized by another tool: import its ranges, calibrate nothing
        return _imported_session(req, importer, model)
    if req.recipe is None:
        raise RecipeError("--recipe is required (only a QAT checkpoint or a quantized model given as --model carries its own)")
    return prepare_session(req.model, req.recipe, req.calib_data, None, req.input_shape, req.eval_data, model=model)


def _imported_session(req: BuildRequest, importer: Importer, model: torch.nn.Module) -> Session:
    # without --recipe each target represents the source's grids in its own form (adapt); the report names every change
    recipe, recipe_path = open_recipe(req.recipe) if req.recipe is not None else (Recipe(on_unsupported="adapt"),
                                                                                  Path(f"(recipe imported from {importer.name})"))
    names = data_names(model, req.eval_data)
    data = open_data(req.eval_data, names, recipe.preprocess) if req.eval_data is not None else None
    example = example_inputs(recipe, req.input_shape, data, names)
    b = import_for_build(importer, model, recipe, example, calib_data=req.calib_data, stats=req.stats)
    return Session(b.recipe, recipe_path, b.reference, b.captured, None, learned=b.learned)


def _stats(session: Session, req: BuildRequest, progress: Progress, shard: Shard) -> StatsSet | None:
    if session.learned is not None:
        progress(f"ranges {session.learned.label}: no calibration")
        return session.learned.stats if shard.is_main else None
    if req.stats is not None:
        progress(f"statistics from {req.stats}")
        if is_distiller_stats(req.stats):  # a Distiller --qe-stats-file
            return read_distiller_stats(req.stats, session.captured, session.recipe) if shard.is_main else None
        return StatsSet.load(req.stats) if shard.is_main else None
    assert session.calib is not None
    c = session.recipe.calibration
    progress(f"calibrate on {min(c.num_samples, session.calib.size)} samples" + (f" across {shard.world} ranks" if shard.world > 1 else ""))
    batches = shard_batches(torch_batches(session.calib, c.batch_size, c.num_samples), shard)
    bar = -(-min(c.num_samples, session.calib.size) // c.batch_size) if shard.world == 1 else 0
    return gather_stats(calibrate(session.captured, session.recipe, track(batches, bar, "calibrate")), shard)




def _report(req: BuildRequest, session: Session, stats: StatsSet, eval_data: Dataset, *, float_accuracy: float | None,
            warnings: list[str], targets: dict[str, TargetEntry], gates: GatesEntry, fallback: Fallback | None,
            precision: PrecisionComparison | None, timings: TimingsEntry) -> Report:
    """report.json: what was built from what, and how each target verified."""
    r = session.recipe
    return Report(
        qconvert_version=__version__,
        torch_version=torch.__version__,
        model=model_label(req.model),
        recipe=str(session.recipe_path),
        recipe_hash=recipe_hash(r),
        recipe_file_sha256=_recipe_file_sha256(session),
        inputs={n: list(t.shape[1:]) for n, t in zip(session.captured.input_names, session.captured.example_inputs)},
        calibration=Calibration(
            ranges=session.learned.label if session.learned else "from stats file" if req.stats else "calibrated",
            stats=str(req.stats) if req.stats else "stats/",
            method=session.learned.method if session.learned else r.calibration.method,
            samples=min(r.calibration.num_samples, session.calib.size) if session.calib else None,
            tensors=len(stats.tensors),
        ),
        eval=EvalInfo(data=str(eval_data.path), samples=eval_data.size, held_out=req.eval_data is not None,
                      labelled=eval_data.labels is not None),
        float=FloatInfo(accuracy=float_accuracy),
        warnings=warnings,
        targets=targets,
        gates=gates,
        fallback=fallback,
        timings=timings,
        precision=precision,
    )


def _build_target(target: Target, options: TargetOptions, session: Session, stats: StatsSet, data: Dataset, tmp: Path,
                  measure_latency: bool, refs: FloatReferences, timings: Timings) -> tuple[TargetEntry, QuantizedModel]:
    """The target's report entry (without ``layers``, which the build adds for all targets at once) and its Q/DQ model."""
    q = _quantize_target(target, options, session, stats, timings)
    ran_targets_here()
    return _finish_target(q, session, data, tmp, measure_latency, refs, timings), q.qmodel


@dataclass(frozen=True)
class _Quantized:
    """One target's plan, the statistics it quantizes with, and its quantized model."""

    target: Target
    options: TargetOptions
    plan: TargetPlan
    stats: StatsSet
    qmodel: QuantizedModel


def _quantize_target(target: Target, options: TargetOptions, session: Session, stats: StatsSet, timings: Timings) -> _Quantized:
    plan = plan_for(session.recipe, target, options)  # this target's effective schemes, constraints and placement
    if session.learned is not None:  # imported grids: this target's ranges for them, or a refusal naming the tensor
        stats = target_stats(session.learned, session.captured, plan.choice.recipe, plan.constraints, target.name, plan.placement)
    with timings.phase("quantize", target.name):
        qmodel = plan.quantize(session.captured, stats, session.calibration_source, session.learned.weights if session.learned else None,
                               recipe=plan.choice.recipe, constraints=plan.constraints)
    return _Quantized(target, options, plan, stats, qmodel)


def _target_task(q: _Quantized, session: Session, data: Dataset, tmp: Path, measure_latency: bool,
                 refs: FloatReferences) -> Task[TargetDone]:
    """``_finish_target`` as a task that may run in a worker process: its entry and its own phases' seconds."""
    def run() -> TargetDone:
        own = Timings()
        entry = _finish_target(q, session, data, tmp, measure_latency, refs, own)
        return TargetDone(entry, own.targets.get(q.target.name, {}))
    return Task(q.target.name, run)


def _finish_target(q: _Quantized, session: Session, data: Dataset, tmp: Path, measure_latency: bool, refs: FloatReferences,
                   timings: Timings) -> TargetEntry:
    """Emit, run, verify and time one target's quantized model; its report entry without ``layers``."""
    target, options, plan, stats, qmodel = q.target, q.options, q.plan, q.stats, q.qmodel
    constraints, choice = plan.constraints, plan.choice
    learned_weights = session.learned.weights if session.learned else None

    def requantize(r: Recipe, c: Any) -> QuantizedModel:
        with timings.phase("quantize", target.name):
            return plan.quantize(session.captured, stats, session.calibration_source, learned_weights, recipe=r, constraints=c)

    out_dir = tmp / target.name
    out_dir.mkdir()
    with timings.phase("emit", target.name):
        artifact = target.emit(qmodel, out_dir, options)
    notes = list(artifact.notes) + list(choice.notes) + list(qmodel.warnings)
    tolerance = target.parity_tolerance_lsb if artifact.tolerance_lsb is None else artifact.tolerance_lsb
    imported = None
    if session.learned is not None and session.learned.imported is not None:
        changes = grid_changes(session.learned, stats, qmodel)
        notes += [c.line() for c in changes]
        imported = imported_grid_entry(session.learned.imported, changes)
    run: RunFigures | None = None
    parity = latency = None
    if artifact.runnable:
        run = verify_outputs(target, artifact, qmodel, refs, data, timings)
        with timings.phase("layer_parity", target.name):
            parity = layer_parity(target, artifact, qmodel, data, tolerance, session.recipe.calibration.batch_size)
        with timings.phase("golden", target.name):
            write_golden(target, artifact, data)
        with timings.phase("latency", target.name):
            latency = target.latency(qmodel, artifact, options, LATENCY_BATCHES) if measure_latency else None
    memo = [(choice.recipe, constraints, qmodel)]  # a variant equal to one already quantized is not quantized again

    def requantize_once(r: Recipe, c: Any) -> QuantizedModel:
        found = next((q for mr, mc, q in memo if mr == r and mc == c), None)
        if found is None:
            found = requantize(r, c)
            memo.append((r, c, found))
        return found

    ctx = CheckContext(session.model, stats, data, requantize_once, references=refs)
    with timings.phase("extra_checks", target.name):
        extra = target.extra_checks(qmodel, artifact, options, ctx)
    notes += list(extra.notes) if extra is not None else []
    device = extra.device if extra is not None else None
    accumulators = None
    if wants_accumulator_check(qmodel):  # on the calibration data; a --stats build has only the evaluation data
        c = session.recipe.calibration
        batches = session.calibration_batches() if session.calib is not None else torch_batches(data, c.batch_size, c.num_samples)
        with timings.phase("accumulators", target.name):
            accumulators = accumulator_entry(qmodel, batches, "calibration" if session.calib is not None else "evaluation")
    entry = TargetEntry(
        artifact=str(Path(target.name) / artifact.main_file),
        runtime=target.runtime_version(),
        executed=artifact.runnable,
        executed_in=artifact.runs_in or None,
        optimize_for=optimize_for_entry(choice, effective_schemes(qmodel)),
        recipe_hash=recipe_hash(qmodel.recipe),
        notes=notes,
        tolerance_lsb=tolerance,
        size_bytes=artifact.path.stat().st_size if artifact.path.is_file() else None,
        imported_grid=imported,
        accuracy=run.accuracy if run else None,
        simulation_accuracy=run.simulation_accuracy if run else None,
        output_scale=run.output_scale if run else None,
        parity_step=run.parity_step if run else None,
        vs_simulation=run.vs_simulation if run else None,
        vs_float=run.vs_float if run else None,
        outputs=run.outputs if run else None,
        layer_parity=parity.entry() if parity is not None else None,
        parity_depth=depth_of(qmodel.graph) if artifact.runnable else None,  # what the end-to-end bound grows with
        latency=latency.entry() if latency is not None else None,
        latency_skipped=artifact.runnable and not measure_latency,
        checks=extra.results if extra is not None else None,
        device=device_entry(device) if device is not None else None,
        gated_on=device.label if device is not None
        else f"artifact in {artifact.runs_in or target.runtime_version()}" if artifact.runnable else None,
        requantization=requantization_entries(qmodel.requantization),
        accumulators=accumulators,
    )
    write_manifest(artifact.directory, _manifest(target, artifact, qmodel, entry, options, _recipe_file_sha256(session)))
    return entry


def _recipe_file_sha256(session: Session) -> str | None:
    return file_sha256(session.recipe_path) if session.recipe_path.is_file() else None


def _manifest(target: Target, artifact: Artifact, qmodel: QuantizedModel, entry: TargetEntry, options: TargetOptions,
              recipe_file_sha256: str | None) -> Manifest:
    assert entry.recipe_hash is not None
    return Manifest(
        qconvert_version=__version__,
        torch_version=torch.__version__,
        target=target.name,
        runtime=entry.runtime,
        recipe=qmodel.recipe.model_dump(mode="json"),
        recipe_hash=entry.recipe_hash,  # the effective recipe this target quantized with
        recipe_file_sha256=recipe_file_sha256,  # the recipe file as committed
        target_options=options.model_dump(mode="json"),
        artifact=ArtifactRecord.of(artifact),
        tolerance=ManifestTolerance(max_lsb=entry.tolerance_lsb, output_scale=qmodel.output_scales()[0],
                                    output_steps=list(qmodel.parity_steps())),  # per output, for 'qconvert verify'
        model_outputs=list(qmodel.captured.output_names),
        parity=ManifestParity(vs_simulation=entry.vs_simulation, vs_float=entry.vs_float, accuracy=entry.accuracy,
                              simulation_accuracy=entry.simulation_accuracy, outputs=entry.outputs),
        quantization=[QuantizationEntry.model_validate(q, from_attributes=True) for q in qmodel.qparams],
    )
