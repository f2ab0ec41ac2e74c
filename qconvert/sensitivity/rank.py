"""Rank layers by how much quantizing them costs, with the torch simulation only.

Two questions per layer, one variant each, all from the same statistics (calibrated
once): what is lost when only this layer is quantized, and what is regained when
everything but this layer is. The first finds the fragile layer in isolation; the
second is what a fallback actually buys, so ``auto_fallback`` orders by it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from qconvert.core.quantize import QuantizedModel
from qconvert.recipe.model import Recipe
from qconvert.sensitivity.onward import score_onward, windows
from qconvert.sensitivity.simulate import Evaluator, SimScore
from qconvert.sensitivity.variants import ROOT_OPS, Layer, kept, only_quantized
from qconvert.verify.report_schema import RankedLayer, SensitivityRanking

__all__ = ["LayerSensitivity", "Metric", "Sensitivity", "rank_layers"]

Metric = Literal["accuracy", "sqnr"]
Quantizer = Callable[[Recipe], QuantizedModel]


@dataclass(frozen=True)
class LayerSensitivity:
    """One layer: its simulation with only it quantized, and with all but it quantized."""

    layer: Layer
    only: SimScore
    all_but: SimScore


@dataclass(frozen=True)
class Sensitivity:
    """Every candidate layer of a model under one recipe, with the fully quantized baseline."""

    metric: Metric
    keep: str
    samples: int
    float_accuracy: float | None
    full: SimScore
    layers: tuple[LayerSensitivity, ...]

    def loss(self, s: LayerSensitivity) -> float:
        """Accuracy points lost vs float, or minus the SQNR, with only this layer quantized (higher: more fragile)."""
        if self.metric == "accuracy":
            return _sub(self.float_accuracy, s.only.accuracy)
        return -_finite(s.only.sqnr_db)

    def regain(self, s: LayerSensitivity) -> float:
        """Accuracy points or dB gained over the full quantization when only this layer is kept."""
        if self.metric == "accuracy":
            return _sub(s.all_but.accuracy, self.full.accuracy)
        return _finite(s.all_but.sqnr_db) - _finite(self.full.sqnr_db)

    def by_loss(self) -> list[LayerSensitivity]:
        """Most fragile first; SQNR breaks ties of accuracy (a small eval set ties often)."""
        return sorted(self.layers, key=lambda s: (-self.loss(s), _finite(s.only.sqnr_db)))

    def by_regain(self) -> list[LayerSensitivity]:
        """Best fallback candidate first; SQNR regained breaks ties."""
        return sorted(self.layers, key=lambda s: (-self.regain(s), -_finite(s.all_but.sqnr_db)))

    def entry(self) -> SensitivityRanking:
        """As 'qconvert sensitivity --json' writes it (and report.json's ``fallback.ranking``): most fragile first."""
        regain_rank = {s.layer.name: i + 1 for i, s in enumerate(self.by_regain())}
        return SensitivityRanking(
            metric=self.metric, keep=self.keep, samples=self.samples, float_accuracy=self.float_accuracy, quantized=self.full.entry(),
            layers=[RankedLayer(layer=s.layer.name, op=s.layer.op, loss=self.loss(s), regain=self.regain(s),
                                regain_rank=regain_rank[s.layer.name], only_quantized=s.only.entry(), all_but=s.all_but.entry())
                    for s in self.by_loss()],
        )


def rank_layers(recipe: Recipe, layers: tuple[Layer, ...], quantize: Quantizer, evaluator: Evaluator,
                metric: Metric = "sqnr", keep: str = "float", progress: Callable[[int], object] = lambda _: None,
                keep_weight_bits: int = 16, onward: bool = True) -> Sensitivity:
    """Score the full quantization and two variants per layer (``progress`` gets the count done).

    ``onward``: score each variant from the layer it changes onward (same figures, less work); False runs every
    variant from the input.

    ``quantize`` turns a recipe into a Q/DQ model from statistics already collected.
    """
    full_graph = quantize(recipe).graph
    full = evaluator.score(full_graph)
    scored: list[LayerSensitivity] = []
    if not onward:
        for i, layer in enumerate(layers):
            only = evaluator.score(quantize(only_quantized(recipe, layer.name, layers)).graph)
            all_but = evaluator.score(quantize(kept(recipe, (layer.name,), keep, keep_weight_bits)).graph)
            scored.append(LayerSensitivity(layer, only, all_but))
            progress(i + 1)
        return Sensitivity(metric, keep, evaluator.samples, evaluator.float_accuracy, full, tuple(scored))
    # Each variant from the layer it changes onward (qconvert.sensitivity.onward): "only this layer" departs from
    # the graph with every candidate in float at that layer, "all but this layer" from the full quantization.
    unquantized = quantize(recipe.model_copy(update={"exclude": (*recipe.exclude, *(la.name for la in layers), ROOT_OPS)})).graph
    for group in windows(layers):
        onlys = score_onward(evaluator, unquantized, [quantize(only_quantized(recipe, la.name, layers)).graph for la in group])
        all_buts = score_onward(evaluator, full_graph, [quantize(kept(recipe, (la.name,), keep, keep_weight_bits)).graph for la in group])
        for layer, o, a in zip(group, onlys, all_buts, strict=True):
            scored.append(LayerSensitivity(layer, o, a))
            progress(len(scored))
    return Sensitivity(metric, keep, evaluator.samples, evaluator.float_accuracy, full, tuple(scored))


def _sub(a: float | None, b: float | None) -> float:
    return 0.0 if a is None or b is None else a - b


def _finite(v: float) -> float:
    """SQNR as a sortable number: an exact match (inf) caps at 300 dB, NaN counts as the worst."""
    if math.isnan(v):
        return -300.0
    return min(v, 300.0)
