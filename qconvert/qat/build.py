"""``qconvert build --model file.qat.pt``: the learned ranges in the form the build consumes.

A build from a QAT checkpoint does not calibrate. Each learned activation range becomes a
statistics entry whose min and max are that range, and the build's recipe reads every range
with ``minmax``, so the core derives exactly the scale and zero point that trained; learned
weight ranges go to ``quantize(weight_ranges=)``; every other weight is quantized over its
min/max, as in training. Targets then work unchanged: each quantizes for its own
constraints and placement from these ranges (a target that must re-encode a scheme, e.g.
symmetric-only TensorRT, says so in its notes, as for any build).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.fx import GraphModule

from qconvert.core.capture import Captured
from qconvert.core.stats import StatsSet, TensorStats
from qconvert.errors import BadInputError, RecipeError
from qconvert.imports.types import ImportedQuant
from qconvert.io.sources import DataSource, RecipeSource, open_recipe
from qconvert.qat.checkpoint import QATCheckpoint, read
from qconvert.recipe.model import Recipe

__all__ = ["TRAINED_FIELDS", "CheckpointBuild", "LearnedRanges", "open_for_build", "range_stats"]

#: Recipe fields that decide what trained; a --recipe given with a checkpoint must agree on them.
TRAINED_FIELDS = ("weights", "activations", "exclude", "no_clip", "overrides", "depthwise_per_channel", "qat")


@dataclass(frozen=True)
class LearnedRanges:
    """A checkpoint's ranges as a build takes them."""

    #: Activation ranges as statistics (min, max = the learned range), fingerprinted for the graph.
    stats: StatsSet
    #: Learned weight ranges for ``quantize(weight_ranges=)``.
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]]
    #: How the ranges trained, e.g. "lsq" or "lsq, ema", for the report.
    method: str
    label: str = "learned (QAT)"
    #: What an importer read from another tool's model (``qconvert.imports``); None for our own checkpoints.
    imported: ImportedQuant | None = None


@dataclass(frozen=True)
class CheckpointBuild:
    recipe: Recipe
    recipe_path: Path
    #: The float model before QAT: the build's float reference.
    model: GraphModule
    captured: Captured
    learned: LearnedRanges


def open_for_build(model_ref: str, recipe_path: RecipeSource | None, *, weights: Path | None = None,
                   calib_data: DataSource | None = None, stats: Path | None = None) -> CheckpointBuild:
    """Read a checkpoint for ``qconvert build``; refuse options that would contradict it.

    ``recipe_path`` is optional (a file, or a ``Recipe``/dict from the Python API): the checkpoint holds its
    recipe. One given must agree with it on ``TRAINED_FIELDS``; its other fields (targets, gates, ...) are used.
    """
    for given, what in ((weights, "--weights"), (calib_data, "--calib-data"), (stats, "--stats")):
        if given is not None:
            raise BadInputError(f"{what} with a QAT checkpoint: its weights and ranges were trained; drop {what}")
    ck = read(model_ref)
    recipe, source = _recipe(ck, recipe_path)
    return CheckpointBuild(_build_recipe(recipe), source, ck.reference, ck.captured(), _learned(ck, recipe))


def _recipe(ck: QATCheckpoint, recipe_source: RecipeSource | None) -> tuple[Recipe, Path]:
    if recipe_source is None:
        return ck.recipe, ck.path
    given, recipe_path = open_recipe(recipe_source)
    differ = [f for f in TRAINED_FIELDS if getattr(given, f) != getattr(ck.recipe, f)]
    if differ:
        raise RecipeError(
            f"{recipe_path}: differs from the recipe {ck.path} was trained with in {', '.join(differ)}; "
            "drop --recipe to use the checkpoint's, or train again with this one"
        )
    return given, recipe_path


def _build_recipe(recipe: Recipe) -> Recipe:
    """The recipe the core quantizes with: every range read as min/max of the learned one,
    and no post-training algorithm (QAT learned what they would correct)."""
    calib = recipe.calibration.model_copy(update={"method": "minmax"})
    overrides = tuple(o.model_copy(update={"method": None, "weight_method": None}) for o in recipe.overrides)
    return recipe.model_copy(update={"calibration": calib, "overrides": overrides, "weight_method": "minmax",
                                     "bias_correction": False, "equalization": False, "weight_rounding": "nearest"})


def _learned(ck: QATCheckpoint, recipe: Recipe) -> LearnedRanges:
    bins = recipe.calibration.bins
    tensors = {k: range_stats(k, ck.modules.get(k, ""), float(lo), float(hi), bins) for k, (lo, hi) in ck.activations.items()}
    methods = sorted({ck.learning[k] for k in ck.activations if k in ck.learning} - {"fixed"})
    return LearnedRanges(StatsSet(ck.fingerprint, tensors), dict(ck.weights), ", ".join(methods) or "fixed")


def range_stats(key: str, module: str, lo: float, hi: float, bins: int) -> TensorStats:
    """Statistics of a tensor seen to take exactly the values lo and hi: min/max give back the
    learned range, and the histogram (on the observers' power-of-two grid) holds those two values."""
    amax = max(abs(lo), abs(hi), 2.0**-24)
    grid = 2.0 ** (math.floor(math.log2(amax)) + 1)
    hist = np.zeros(bins, dtype=np.int64)
    for v in (lo, hi):
        hist[math.floor(v * bins / (2.0 * grid)) + bins // 2] += 1
    return TensorStats(key=key, module=module, min=lo, max=hi, sum_batch_min=lo, sum_batch_max=hi, ema_min=lo, ema_max=hi,
                       batches=1, count=2, sum=lo + hi, sum_sq=lo * lo + hi * hi, hist_range=grid, hist=hist)
