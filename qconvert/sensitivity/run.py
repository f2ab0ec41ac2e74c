"""``qconvert sensitivity``: calibrate once (or load statistics), then rank every layer.

Only the torch simulation runs; with ``target`` the variants are quantized under that
target's constraints and Q/DQ placement, but its runtime is not needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qconvert.core.quantize import QuantizedModel, calibrate
from qconvert.core.stats import StatsSet
from qconvert.errors import DataError
from qconvert.io.sources import DataSource, ModelSource, RecipeSource, open_data
from qconvert.progress import track
from qconvert.recipe.model import Recipe
from qconvert.sensitivity.rank import Metric, Sensitivity, rank_layers
from qconvert.sensitivity.simulate import Evaluator
from qconvert.sensitivity.variants import candidate_layers
from qconvert.targets.plan import plan_for
from qconvert.targets.registry import TargetRegistry
from qconvert.verify.numbers import cell

__all__ = ["SensitivityRequest", "run_sensitivity", "sensitivity_table"]


@dataclass(frozen=True)
class SensitivityRequest:
    model: ModelSource
    recipe: RecipeSource
    eval_data: DataSource
    calib_data: DataSource | None = None
    weights: Path | None = None
    stats: Path | None = None
    input_shape: tuple[int, ...] | None = None
    target: str | None = None
    metric: Metric = "sqnr"
    keep: str = "float"
    samples: int | None = None


def run_sensitivity(req: SensitivityRequest, registry: TargetRegistry) -> Sensitivity:
    """Rank the layers of ``req.model`` under ``req.recipe``.

    Raises:
        DataError: no statistics source, or ``metric='accuracy'`` on unlabelled data.
    """
    from qconvert.session import prepare_session, torch_batches

    if req.calib_data is None and req.stats is None:
        raise DataError("no calibration data: pass --calib-data, or --stats from an earlier 'qconvert calibrate'")
    s = prepare_session(req.model, req.recipe, req.calib_data, req.weights, req.input_shape, req.eval_data)
    recipe: Recipe = s.recipe
    data = open_data(req.eval_data, s.captured.input_names, recipe.preprocess)
    target = registry.get(req.target) if req.target is not None else None
    options = target.parse_options(recipe.targets.get(target.name), str(s.recipe_path)) if target is not None else None
    if req.stats is not None:
        stats = StatsSet.load(req.stats)
    else:
        assert s.calib is not None
        c = recipe.calibration
        batches = track(torch_batches(s.calib, c.batch_size, c.num_samples), -(-min(c.num_samples, s.calib.size) // c.batch_size),
                        "calibrate")
        stats = calibrate(s.captured, recipe, batches)
    evaluator = Evaluator(s.model, data, recipe.calibration.batch_size, req.samples)
    if req.metric == "accuracy" and not evaluator.labelled:
        raise DataError(f"{req.eval_data}: --metric accuracy needs labels ('y' in the .npz); use --metric sqnr")

    def quant(r: Recipe) -> QuantizedModel:  # what a build for this target quantizes each variant with
        return plan_for(r, target, options).quantize(s.captured, stats, s.calibration_source)

    types = {n: type(m).__name__ for n, m in s.model.named_modules()}
    layers = candidate_layers(s.captured.graph, types)
    done = iter(track(range(len(layers)), len(layers), "sensitivity"))
    return rank_layers(recipe, layers, quant, evaluator, req.metric, req.keep, progress=lambda _: next(done, None),
                       keep_weight_bits=plan_for(recipe, target, options).constraints.max_weight_bits)


def sensitivity_table(sens: Sensitivity) -> str:
    """Most fragile layer first: what quantizing it alone loses, what keeping it alone regains."""
    unit = "pp" if sens.metric == "accuracy" else "dB"
    lost = "acc. lost pp" if sens.metric == "accuracy" else "SQNR alone dB"
    head = f"{'rank':>4}  {'layer':30s} {'op':18s} {lost:>13s} {'regained ' + unit:>12s} {'regain rank':>11s}"
    regain_rank = {s.layer.name: i + 1 for i, s in enumerate(sens.by_regain())}
    rows = [head]
    for i, s in enumerate(sens.by_loss()):
        first = sens.loss(s) if sens.metric == "accuracy" else s.only.sqnr_db
        rows.append(f"{i + 1:>4}  {s.layer.name:30s} {s.layer.op:18s} {_num(first):>13s} {_num(sens.regain(s)):>12s} "
                    f"{regain_rank[s.layer.name]:>11d}")
    full = sens.full
    acc = f", accuracy {_num(full.accuracy)} % (float {_num(sens.float_accuracy)} %)" if full.accuracy is not None else ""
    rows.append(f"\nall layers quantized: SQNR {_num(full.sqnr_db)} dB{acc}; {sens.samples} samples, kept layers at {sens.keep}")
    return "\n".join(rows)


def _num(v: float | None) -> str:
    return cell(v)
