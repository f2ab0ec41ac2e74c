"""``prepare``: make a float model quantization-aware, per a recipe, for the caller's own training loop.

The quantized tensors, their schemes, overrides and exclusions are the ones a build
of the same recipe uses: the core's quantizer places them (see ``rewrite``). Ranges
start from a post-training calibration when one is given (the model then computes
exactly what the PTQ build's simulation computes), else from the example inputs.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from torch.fx import GraphModule
from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

from qconvert.core.annotate import QConvertQuantizer
from qconvert.core.capture import Captured, capture
from qconvert.core.constraints import QuantConstraints
from qconvert.core.coverage import observe_consumed_tensors
from qconvert.core.graph import module_names_of_graph
from qconvert.core.observer import QObserver
from qconvert.core.plan import TensorQuant
from qconvert.core.policy import QuantPolicy, check_layer_names, matches
from qconvert.core.quantize import calibrate
from qconvert.core.stats import StatsSet
from qconvert.errors import RecipeError, StatsError
from qconvert.qat.fake_quant import FakeQuant, RangeLearning
from qconvert.qat.model import Origin, QATModel
from qconvert.qat.rewrite import attr_of, training_graph
from qconvert.recipe.load import load_recipe
from qconvert.recipe.model import LayerOverride, Recipe

__all__ = ["prepare", "prepare_captured"]

Calibration = StatsSet | Iterable[tuple[torch.Tensor, ...]] | None


def prepare(model: nn.Module, recipe: Recipe | str | Path, example_inputs: tuple[torch.Tensor, ...] | torch.Tensor,
            calibration: Calibration = None, target: str | None = None) -> QATModel:
    """A trainable copy of ``model`` with fake quantization on weights and activations.

    Args:
        model: the float model; it is captured with ``torch.export`` (as a build does)
            and never modified.
        recipe: a ``Recipe`` or a recipe file; its schemes, ``overrides``, ``exclude`` and
            ``qat`` section decide what is quantized and how ranges train.
        example_inputs: one batch of inputs (a tensor or a tuple, one per forward argument).
        calibration: optional PTQ start: a ``StatsSet`` from ``qconvert calibrate`` on this
            model, or batches (tuples of tensors) to calibrate on now. Without it, ranges
            start from the example inputs' min/max.
        target: the target the model will be built for: schemes the recipe leaves out
            take the types a build for it uses (its fast types or, with ``optimize_for:
            accuracy``, its most accurate ones; TensorRT: symmetric activations), so training
            sees the grid the device runs.

    Raises:
        RecipeError: the recipe asks for something QAT does not train (dynamic quantization,
            equalization, bias correction) or names layers the model lacks.
        CaptureError: torch.export cannot capture the model.
        StatsError: ``calibration`` statistics come from another model.
    """
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    if target is not None:
        recipe = _as_built_for(recipe, target)
    _check_recipe(recipe)
    example = _batch_of_two(example_inputs)
    captured = capture(model, example)
    check_layer_names(recipe, [n for n, _ in model.named_modules()] + module_names_of_graph(captured.graph))
    stats = calibrate(captured, recipe, calibration) if calibration is not None and not isinstance(calibration, StatsSet) else calibration
    return prepare_captured(captured, recipe, stats)


def _as_built_for(recipe: Recipe, name: str) -> Recipe:
    from qconvert.targets.plan import plan_for
    from qconvert.targets.registry import TargetRegistry

    target = TargetRegistry().get(name)
    return plan_for(recipe, target, target.parse_options(recipe.targets.get(name))).recipe


def prepare_captured(captured: Captured, recipe: Recipe, stats: StatsSet | None = None,
                     reference: GraphModule | None = None) -> QATModel:
    """``prepare`` from an already captured graph (a checkpoint's program); ``reference`` is the
    float model before QAT, when ``captured`` is not it."""
    if stats is not None and stats.fingerprint != captured.fingerprint:
        raise StatsError(
            f"calibration statistics come from another model or input shape (fingerprint {stats.fingerprint}, "
            f"this model {captured.fingerprint}); calibrate this model"
        )
    prepared = _placement(captured, recipe)
    make = _FakeQuantFactory(recipe, stats, prepared)
    graph = training_graph(captured.graph, prepared, make)
    origin = Origin(recipe, captured.graph, captured.input_names, captured.example_inputs, captured.fingerprint,
                    reference if reference is not None else captured.graph)
    qat = QATModel(graph, origin)
    qat.eval()
    with torch.no_grad():  # ranges not set from statistics start from the example inputs
        qat(*captured.example_inputs)
    return qat.train()


def _check_recipe(recipe: Recipe) -> None:
    unsupported = [name for name, on in (("dynamic", recipe.dynamic or any(o.dynamic for o in recipe.overrides)),
                                         ("equalization", recipe.equalization), ("bias_correction", recipe.bias_correction),
                                         ("weight_rounding: adaround", recipe.weight_rounding == "adaround")) if on]
    if unsupported:
        raise RecipeError(
            f"recipe {', '.join(unsupported)}: post-training only; quantization-aware training learns the ranges "
            "instead (set them to false in the recipe used for QAT)"
        )


def _batch_of_two(example_inputs: tuple[torch.Tensor, ...] | torch.Tensor) -> tuple[torch.Tensor, ...]:
    """torch.export specializes a batch of 1, so capture sees at least two samples."""
    ex = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    return tuple(t[:2] if t.shape[0] >= 2 else torch.cat([t, t]) for t in ex)


def _placement(captured: Captured, recipe: Recipe) -> GraphModule:
    """The core's placement for this recipe (no target): observers where a build quantizes,
    plus coverage observers where other targets' placements may quantize."""
    quantizer = QConvertQuantizer(QuantPolicy(recipe, QuantConstraints(), ""))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_pt2e(copy.deepcopy(captured.graph), quantizer)
    keys = {m.spec.key for m in prepared.modules() if isinstance(m, QObserver)}
    observe_consumed_tensors(prepared, recipe, keys)
    return prepared


class _FakeQuantFactory:
    """Turns each of the placement's observers into a ``FakeQuant``, started from statistics if any."""

    def __init__(self, recipe: Recipe, stats: StatsSet | None, prepared: GraphModule) -> None:
        self.recipe, self.stats, self.prepared = recipe, stats, prepared

    def __call__(self, obs: QObserver, channels: int, passive: bool) -> FakeQuant:
        learn = "ema" if passive else _learning(self.recipe, obs.spec)
        fq = FakeQuant(obs.spec, learn, channels, self.recipe.qat.ema_decay, passive)
        if self.stats is not None:
            self._start_from_calibration(fq, obs)
        return fq

    def _start_from_calibration(self, fq: FakeQuant, obs: QObserver) -> None:
        if fq.learn in ("minmax", "fixed"):
            return
        if obs.spec.role == "weight":
            _feed_weight(self.prepared, obs)
        else:
            assert self.stats is not None
            if obs.spec.key not in self.stats.tensors:
                return  # starts from the example inputs
            obs.load_stats(self.stats.tensors[obs.spec.key])
        fq.init_from_qparams(*obs.calculate_qparams())


def _feed_weight(prepared: GraphModule, obs: QObserver) -> None:
    for node in prepared.graph.nodes:
        if node.op == "call_module" and prepared.get_submodule(str(node.target)) is obs:
            obs(attr_of(prepared, str(node.args[0].target)))
            return


def _override(recipe: Recipe, module: str) -> LayerOverride | None:
    """The recipe's override for ``module``, with the core's precedence (exact name, then globs in order)."""
    exact = [o for o in recipe.overrides if o.match == module]
    return exact[0] if exact else next((o for o in recipe.overrides if matches(o.match, module)), None)


def _learning(recipe: Recipe, spec: TensorQuant) -> RangeLearning:
    o = _override(recipe, spec.module)
    if spec.role == "weight":
        return (o.qat_weight_ranges if o else None) or recipe.qat.weight_ranges
    if any(matches(p, spec.module) for p in recipe.no_clip):
        return "ema"  # never clipped by a learned bound
    return (o.qat_activation_ranges if o else None) or recipe.qat.activation_ranges
