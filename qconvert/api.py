"""The Python API: ``qconvert.build``, ``calibrate``, ``sensitivity`` and ``verify``.

The command line is a thin layer over these functions. They take what a notebook or a
training script has at hand, besides the CLI's references:

- model: an ``nn.Module`` or ``torch.export.ExportedProgram`` in memory (qconvert works on a
  deep copy: the caller's module keeps its mode and parameters), or a reference
  (``"path/file.py:factory"``, ``"file.pt2"``, a QAT checkpoint);
- recipe: a ``Recipe``, a dict (validated like a file: errors name the key path), or a path;
- data: an iterable of batches (a ``DataLoader``) with an optional NNCF-style
  ``transform_fn`` (batch -> model inputs) and ``labels_fn`` (batch -> labels), numpy
  arrays (an array, or a dict like a ``.npz``: ``x`` or one array per input, labels ``y``),
  ``Batches``/``Arrays``, or a path. It is streamed: memory does not grow with the samples.

Nothing here prints: progress goes to an optional ``progress`` callback. ``verify`` imports
no torch, so it runs on a board with only the runtime and numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qconvert.errors import BadInputError, GateFailedError
from qconvert.io.batches import Arrays, Batches, BatchFn

if TYPE_CHECKING:
    from qconvert.io.sources import DataSource, ModelSource, RecipeSource
    from qconvert.results import BuildReport, Calibration
    from qconvert.sensitivity.rank import Metric, Sensitivity
    from qconvert.targets.registry import TargetRegistry
    from qconvert.verify.ondevice import Verdict

__all__ = ["as_data_source", "build", "calibrate", "sensitivity", "verify"]

Progress = Callable[[str], None]


def as_data_source(data: Any, transform_fn: BatchFn | None = None, labels_fn: BatchFn | None = None,
                   what: str = "data") -> DataSource | None:
    """What the pipeline reads for ``data``: a path, ``Arrays`` in memory, or streamed ``Batches``."""
    if data is None:
        return None
    if isinstance(data, (str, Path)):
        if transform_fn is not None or labels_fn is not None:
            raise BadInputError(f"{what}: transform_fn and labels_fn apply to an iterable of batches, not to the file {data}")
        return Path(data)
    if isinstance(data, (Batches, Arrays)):
        return data
    if isinstance(data, np.ndarray) or (hasattr(data, "detach") and hasattr(data, "numpy")):
        return Arrays((data,), name=f"<{type(data).__name__}>")
    if isinstance(data, Mapping):
        from qconvert.io.data import LABEL_KEYS

        label_key = next((k for k in LABEL_KEYS if k in data), None)
        inputs = {k: v for k, v in data.items() if k != label_key}
        return Arrays(inputs, None if label_key is None else data[label_key], name="<arrays>")
    if isinstance(data, Iterable):
        return Batches(data, transform_fn, labels_fn)
    raise BadInputError(f"{what}: expected a DataLoader or iterable of batches, numpy arrays, or a path; got {type(data).__name__}")


def _registry(registry: TargetRegistry | None) -> TargetRegistry:
    from qconvert.targets.registry import TargetRegistry

    return registry if registry is not None else TargetRegistry()


def _model(model: Any) -> ModelSource:
    return str(model) if isinstance(model, Path) else model


def build(model: ModelSource | Path, recipe: RecipeSource | None, *, targets: Sequence[str], out: str | Path,
          calib_data: Any = None, eval_data: Any = None, transform_fn: BatchFn | None = None, labels_fn: BatchFn | None = None,
          weights: str | Path | None = None, input_shape: Sequence[int] | None = None, stats: str | Path | None = None,
          latency: bool = True, raise_on_gate_failure: bool = False, registry: TargetRegistry | None = None,
          progress: Progress | None = None, compare_precision: Sequence[int] | None = None, jobs: int | None = None) -> BuildReport:
    """Calibrate once, then quantize, emit and verify an artifact for each of ``targets`` into ``out``.

    ``transform_fn``/``labels_fn`` apply to both ``calib_data`` and ``eval_data`` when they are
    iterables of batches (wrap one in ``Batches`` to give it its own). Without ``eval_data`` the
    calibration data is used to verify. ``out`` is replaced as a whole at the end; a failed
    build leaves no half-written folder. ``compare_precision`` (e.g. ``(8, 16)``) also builds those
    activation widths and reports them side by side (recipe ``compare_precision``). ``jobs``: worker processes
    that emit and verify targets side by side (forked after calibration; None or 1: one after the other in
    this process). Fork only from a process that has not run a target's runtime before (see
    ``qconvert.parallel.fork_blocker``); the ``qconvert`` command's ``--jobs auto`` does.

    Returns:
        The typed report (the figures of ``out/report.json``). A failed gate shows in
        ``result.gates``; with ``raise_on_gate_failure`` it raises ``GateFailedError`` instead,
        after ``out`` is written.

    Raises:
        BadInputError: model, recipe or data is wrong (the message says how).
        TargetUnavailableError: a target's runtime is not installed here.
    """
    from qconvert.pipeline import BuildRequest
    from qconvert.pipeline import build as run_build
    from qconvert.results import BuildReport

    if isinstance(targets, str):
        targets = [targets]
    req = BuildRequest(model=_model(model), recipe=recipe if not isinstance(recipe, str) else Path(recipe),
                       calib_data=as_data_source(calib_data, transform_fn, labels_fn, "calib_data"),
                       eval_data=as_data_source(eval_data, transform_fn, labels_fn, "eval_data"),
                       out=Path(out), targets=tuple(targets), weights=Path(weights) if weights is not None else None,
                       input_shape=tuple(input_shape) if input_shape is not None else None,
                       stats=Path(stats) if stats is not None else None, latency=latency,
                       compare_precision=tuple(compare_precision) if compare_precision else None, jobs=jobs)
    result = run_build(req, _registry(registry), progress or (lambda _: None))
    if result.secondary:
        return None  # type: ignore[return-value]  # a secondary torchrun rank: rank 0 writes and returns the report
    assert result.report is not None
    report = BuildReport.of(result.out, result.report)
    if raise_on_gate_failure and not report.passed:
        raise GateFailedError(list(report.gates.failures))
    return report


def calibrate(model: ModelSource | Path, recipe: RecipeSource, calib_data: Any, *, out: str | Path | None = None,
              transform_fn: BatchFn | None = None, labels_fn: BatchFn | None = None, weights: str | Path | None = None,
              input_shape: Sequence[int] | None = None) -> Calibration:
    """Collect calibration statistics once (``out``: a folder for ``build(stats=out)``)."""
    from qconvert.core.distributed import current_shard, gather_stats, shard_batches
    from qconvert.core.quantize import calibrate as run_calibrate
    from qconvert.io.outdir import check_out_dir, staged_dir
    from qconvert.results import Calibration
    from qconvert.session import prepare_session, torch_batches

    shard = current_shard()
    if out is not None:
        check_out_dir(Path(out), "stats.json")
    source = as_data_source(calib_data, transform_fn, labels_fn, "calib_data")
    if source is None:
        raise BadInputError("calibrate needs calib_data")
    s = prepare_session(_model(model), recipe if not isinstance(recipe, str) else Path(recipe), source,
                        Path(weights) if weights is not None else None, tuple(input_shape) if input_shape is not None else None)
    assert s.calib is not None
    c = s.recipe.calibration
    batches = shard_batches(torch_batches(s.calib, c.batch_size, c.num_samples), shard)
    stats = gather_stats(run_calibrate(s.captured, s.recipe, batches), shard)
    if stats is None:
        return Calibration(None, 0, 0)  # a secondary torchrun rank: its statistics went to rank 0
    if out is not None:
        with staged_dir(Path(out)) as tmp:  # a whole stats folder or none, also on Ctrl-C
            stats.save(tmp)
    return Calibration(Path(out) if out is not None else None, len(stats.tensors), min(c.num_samples, s.calib.size))


def sensitivity(model: ModelSource | Path, recipe: RecipeSource, eval_data: Any, *, calib_data: Any = None,
                transform_fn: BatchFn | None = None, labels_fn: BatchFn | None = None, stats: str | Path | None = None,
                weights: str | Path | None = None, input_shape: Sequence[int] | None = None, target: str | None = None,
                metric: Metric = "sqnr", keep: str = "float", samples: int | None = None,
                registry: TargetRegistry | None = None) -> Sensitivity:
    """Rank layers by what quantizing only them loses and keeping only them regains (torch simulation).

    Without ``calib_data`` and ``stats``, the evaluation data calibrates.
    """
    from qconvert.sensitivity.run import SensitivityRequest, run_sensitivity

    evals = as_data_source(eval_data, transform_fn, labels_fn, "eval_data")
    if evals is None:
        raise BadInputError("sensitivity needs eval_data")
    calib = as_data_source(calib_data, transform_fn, labels_fn, "calib_data")
    req = SensitivityRequest(model=_model(model), recipe=recipe if not isinstance(recipe, str) else Path(recipe), eval_data=evals,
                             calib_data=calib if calib is not None or stats is not None else evals,
                             weights=Path(weights) if weights is not None else None, stats=Path(stats) if stats is not None else None,
                             input_shape=tuple(input_shape) if input_shape is not None else None, target=target, metric=metric,
                             keep=keep, samples=samples)
    return run_sensitivity(req, _registry(registry))


def verify(artifact_dir: str | Path, data: str | Path | None = None, *, raise_on_failure: bool = False,
           registry: TargetRegistry | None = None) -> Verdict:
    """Run a built artifact (``OUT/<target>``) in its runtime against its golden outputs (or ``data``, a .npz).

    Imports no torch. Returns the verdict (``verdict.passed``, one ``OutputCheck`` per output);
    with ``raise_on_failure`` a failing output raises ``GateFailedError``.
    """
    from qconvert.verify.ondevice import verify_artifact

    verdict = verify_artifact(Path(artifact_dir), _registry(registry), Path(data) if data is not None else None)
    if raise_on_failure and not verdict.passed:
        raise GateFailedError(verdict.failures())
    return verdict
