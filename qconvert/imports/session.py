"""``qconvert build`` on a model quantized by another tool: load once, detect, import.

``open_model`` loads ``--model`` (and ``--weights``, legacy names renamed for the tool
found) and says which tool quantized it; ``import_for_build`` captures the float twin and
turns the tool's grids into the ranges and recipe the build uses. Nothing is calibrated.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn
from torch.fx import GraphModule

from qconvert.core.capture import Captured, forward_input_names, graph_fingerprint
from qconvert.errors import BadInputError
from qconvert.imports.annotatable import folded_names
from qconvert.imports.ranges import plan_import
from qconvert.imports.registry import Importer, detect
from qconvert.imports.source import SourceModel, resolve
from qconvert.imports.tap import capture_tapped, strip_taps
from qconvert.io.model import load_model, load_weights
from qconvert.qat.build import LearnedRanges
from qconvert.recipe.model import Recipe

__all__ = ["ImportedBuild", "OpenedModel", "import_for_build", "open_model"]


@dataclass(frozen=True)
class OpenedModel:
    model: nn.Module
    #: The tool that quantized the model; None for a float model.
    importer: Importer | None


@dataclass(frozen=True)
class ImportedBuild:
    recipe: Recipe
    #: The source model (eval, its own fake quantization): the parity reference.
    reference: nn.Module
    captured: Captured
    learned: LearnedRanges


def open_model(model_ref: str, weights: Path | None) -> OpenedModel:
    """Load ``--model`` once; a state dict given as ``--weights`` is loaded after detection,
    so a tool's legacy buffer names (pytorch-quantization's ``_input_quantizer._amax``) load
    into the modules that tool uses today."""
    model = load_model(model_ref, None)
    importer = detect(model)
    if weights is not None:
        load_weights(model, weights, rename=importer.rename_state if importer else None)
    return OpenedModel(model, importer)


def import_for_build(importer: Importer, model: nn.Module, recipe: Recipe, example: tuple[torch.Tensor, ...], *,
                     calib_data: object | None = None, stats: Path | None = None) -> ImportedBuild:
    """The build's session parts for a model quantized by ``importer``'s tool."""
    for given, what in ((calib_data, "--calib-data"), (stats, "--stats")):
        if given is not None:
            raise BadInputError(f"{what} with a model quantized by {importer.name}: its ranges are imported from the model, "
                                f"nothing is calibrated; drop {what} (only --eval-data is needed)")
    source: SourceModel = importer.open_source(model)
    if source.graph_ready and isinstance(source.tapped, GraphModule):
        sites = strip_taps(source.tapped)
        fp = graph_fingerprint(source.tapped, example)
        captured = Captured(source.tapped, forward_input_names(source.tapped, len(example)), example, fp)
    else:
        captured, sites = capture_tapped(source.tapped, example)
    renamed = folded_names(captured.graph)
    imported = resolve(source, [replace(s, key=renamed.get(s.key, s.key)) for s in sites])
    if not imported.tensors:
        raise BadInputError(f"the {importer.name} model has no enabled quantizer on any tensor the graph computes; nothing to import")
    plan = plan_import(imported, captured, recipe)
    return ImportedBuild(plan.recipe, source.reference, captured, plan.learned)
