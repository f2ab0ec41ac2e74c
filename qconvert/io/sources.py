"""What a build reads, from the command line or from Python: model, recipe and data sources.

Each ``open_*`` takes today's references (``file.py:factory``, a recipe path, a data path)
exactly as before, and also objects in memory: an ``nn.Module`` or ``ExportedProgram``, a
``Recipe`` or a dict, ``Batches`` or ``Arrays``. A model in memory is deep-copied before
anything touches it, so the caller's module keeps its mode and parameters.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import torch

from qconvert.errors import DataError, ModelLoadError, RecipeError
from qconvert.io.batches import Arrays, Batches, StreamedDataset, array_dataset
from qconvert.io.data import LABEL_KEYS, Dataset, open_dataset
from qconvert.io.inputs import forward_params, input_names_for, input_names_for_keys
from qconvert.io.model import eval_mode, load_model, load_weights
from qconvert.recipe.load import load_recipe, recipe_from_mapping
from qconvert.recipe.model import Preprocess, Recipe

if TYPE_CHECKING:
    from torch.export import ExportedProgram

__all__ = ["DataSource", "ModelSource", "RecipeSource", "data_names", "model_label", "open_data", "open_model", "open_recipe"]

ModelSource: TypeAlias = "str | torch.nn.Module | ExportedProgram"
RecipeSource: TypeAlias = "str | Path | Recipe | Mapping[str, Any]"
DataSource: TypeAlias = "str | Path | Batches | Arrays"


def open_model(source: ModelSource, weights: Path | None = None) -> torch.nn.Module:
    """The model to quantize, in eval mode: loaded from a reference, or a copy of one in memory."""
    if isinstance(source, (str, Path)):
        return load_model(str(source), str(weights) if weights else None)
    model: torch.nn.Module
    if isinstance(source, torch.export.ExportedProgram):
        model = source.module()
    elif isinstance(source, torch.nn.Module):
        model = source
    else:
        raise ModelLoadError(f"model: expected an nn.Module, an ExportedProgram or a reference like 'file.py:factory', "
                             f"got {type(source).__name__}")
    try:
        model = copy.deepcopy(model).cpu()  # calibration and verification run on the CPU
    except Exception as e:
        raise ModelLoadError(f"model: qconvert works on a copy of your {type(source).__name__} and could not copy it "
                             f"({type(e).__name__}: {e}); pass a reference ('file.py:factory') instead") from e
    if weights is not None:
        load_weights(model, Path(weights))
    return eval_mode(model)


def model_label(source: ModelSource) -> str:
    """How reports name the model: the reference, or the class of the object given."""
    if isinstance(source, (str, Path)):
        return str(source)
    return f"<{type(source).__name__}>" if isinstance(source, torch.export.ExportedProgram) else f"<{type(source).__name__} in memory>"


def open_recipe(source: RecipeSource) -> tuple[Recipe, Path]:
    """The validated recipe and what to call it in reports and messages."""
    if isinstance(source, Recipe):
        return source, Path("<Recipe>")
    if isinstance(source, Mapping):
        return recipe_from_mapping(dict(source)), Path("<recipe dict>")
    if isinstance(source, (str, Path)):
        return load_recipe(source), Path(source)
    raise RecipeError(f"recipe: expected a Recipe, a dict or a path to a YAML/JSON file, got {type(source).__name__}")


def data_names(model: torch.nn.Module, source: DataSource | None) -> tuple[str, ...]:
    """The forward parameters ``source`` feeds, in order (see ``qconvert.io.inputs``)."""
    if source is None or isinstance(source, (str, Path)):
        return input_names_for(model, Path(source) if source is not None else None)
    if isinstance(source, Arrays):
        if isinstance(source.inputs, Mapping):
            return input_names_for_keys(model, set(source.inputs), Path(source.name))
        return _positional(model, len(source.inputs))
    if isinstance(source, Batches):
        return _batch_names(model, source)
    raise DataError(f"data: expected a DataLoader or iterable of batches, numpy arrays, or a path; got {type(source).__name__}")


def _positional(model: torch.nn.Module, count: int) -> tuple[str, ...]:
    params = forward_params(model)
    if len(params) < count:
        return tuple(p.name for p in params) + tuple(f"input_{i}" for i in range(len(params), count))
    return tuple(p.name for p in params[:count])


def _batch_names(model: torch.nn.Module, source: Batches) -> tuple[str, ...]:
    first = next(iter(source.source), None)
    if first is None:
        raise DataError(f"{source.label}: yields no batches")
    x = source.transform_fn(first) if source.transform_fn is not None else first
    if isinstance(x, Mapping):
        return input_names_for_keys(model, set(x) - set(LABEL_KEYS), Path(source.label))
    if not isinstance(x, (tuple, list)):
        return _positional(model, 1)
    if source.transform_fn is not None or source.labels_fn is not None:
        return _positional(model, len(x))
    required = sum(1 for p in forward_params(model) if p.required) or 1
    # (inputs..., labels): one element more than the model's required inputs is the labels
    return _positional(model, len(x) - 1 if len(x) == required + 1 else len(x))


def open_data(source: DataSource, input_names: tuple[str, ...], preprocess: Preprocess | None) -> Dataset:
    """A streamed ``Dataset`` for any data source."""
    if isinstance(source, (str, Path)):
        return open_dataset(source, input_names, preprocess)
    if isinstance(source, Batches):
        return StreamedDataset(source, input_names)
    if isinstance(source, Arrays):
        return array_dataset(source, input_names)
    raise DataError(f"data: expected a DataLoader or iterable of batches, numpy arrays, or a path; got {type(source).__name__}")
