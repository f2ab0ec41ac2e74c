"""What every command needs before quantizing: the recipe, the model, the data and the capture.

``prepare_session`` opens them for ``build``, ``calibrate`` and ``sensitivity`` alike; the build
adds QAT checkpoints and imported models (``qconvert.pipeline``), which make the same ``Session``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qconvert.core.binding import call_model
from qconvert.core.capture import Captured, capture
from qconvert.core.equalize import equalize
from qconvert.core.graph import module_names_of_graph
from qconvert.core.policy import check_layer_names
from qconvert.errors import DataError
from qconvert.io.data import Dataset
from qconvert.io.sources import DataSource, ModelSource, RecipeSource, data_names, model_label, open_data, open_model, open_recipe
from qconvert.qat.build import LearnedRanges
from qconvert.recipe.model import Recipe

__all__ = ["Session", "check_fits", "example_inputs", "prepare_session", "torch_batches"]


@dataclass(frozen=True)
class Session:
    """What every command needs before quantizing: recipe, model, data, capture."""

    recipe: Recipe
    recipe_path: Path
    model: torch.nn.Module
    captured: Captured
    calib: Dataset | None
    #: Ranges learned in quantization-aware training (``--model`` is a QAT checkpoint): nothing is calibrated.
    learned: LearnedRanges | None = None

    @property
    def calibration_source(self) -> Callable[[], Iterator[tuple[torch.Tensor, ...]]] | None:
        """``calibration_batches`` where the build has calibration data; None for a build from --stats or imported
        ranges, so whatever needs the data again (bias correction, TIDL's frames) can tell there is none."""
        return self.calibration_batches if self.calib is not None else None

    def calibration_batches(self) -> Iterator[tuple[torch.Tensor, ...]]:
        """The calibration batches again (bias correction reads them a second time)."""
        if self.calib is None:
            return iter(())
        c = self.recipe.calibration
        return torch_batches(self.calib, c.batch_size, c.num_samples)


def prepare_session(model_ref: ModelSource, recipe_path: RecipeSource, calib_data: DataSource | None, weights: Path | None,
                    input_shape: tuple[int, ...] | None, data_for_shape: DataSource | None = None,
                    model: torch.nn.Module | None = None) -> Session:
    recipe, recipe_path = open_recipe(recipe_path)
    model = model if model is not None else open_model(model_ref, weights)
    shape_source = calib_data if calib_data is not None else data_for_shape
    names = data_names(model, shape_source)
    calib = open_data(calib_data, names, recipe.preprocess) if calib_data is not None else None
    shape_data = calib if calib else (open_data(data_for_shape, names, recipe.preprocess) if data_for_shape is not None else None)
    example = example_inputs(recipe, input_shape, shape_data, names)
    check_fits(model, example, model_label(model_ref), names)
    captured = capture(model, example, names)
    check_layer_names(recipe, [n for n, _ in model.named_modules()] + module_names_of_graph(captured.graph))
    if recipe.equalization:
        captured, _ = equalize(captured)
    return Session(recipe, recipe_path, model, captured, calib)


def example_inputs(recipe: Recipe, input_shape: tuple[int, ...] | None, data: Dataset | None,
                   names: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    shape = input_shape or recipe.input_shape
    if data is not None:
        first = next(data.batches(2, limit=2)).inputs
        if shape is not None and tuple(first[0].shape[1:]) != tuple(shape[1:]):
            raise DataError(
                f"{data.path}: samples have shape {tuple(first[0].shape[1:])} but the input shape is {tuple(shape[1:])} "
                "(batch excluded); fix --input-shape / recipe input_shape or the data"
            )
        ex = tuple(torch.from_numpy(np.array(a)) for a in first)
        if ex[0].shape[0] < 2:
            ex = tuple(torch.cat([t, t]) for t in ex)
        return ex
    if shape is None:
        raise DataError("no input shape: pass --input-shape N,C,H,W, set input_shape in the recipe, or give data")
    return (torch.randn(2, *shape[1:]),)


def check_fits(model: torch.nn.Module, example: tuple[torch.Tensor, ...], model_ref: str = "", names: tuple[str, ...] = ()) -> None:
    try:
        with torch.no_grad():
            call_model(model, names, example) if names else model(*example)
    except Exception as e:
        shapes = ", ".join(f"{tuple(t.shape)} {t.dtype}".replace("torch.", "") for t in example)
        fixed = re.search(r"size\(\)\[0\] == (\d+)", str(e))
        if model_ref.endswith(".pt2") and fixed:
            raise DataError(
                f"{model_ref} was exported with a fixed batch of {fixed.group(1)}; qconvert runs the model at several batch "
                "sizes: export it again with a dynamic batch, e.g. torch.export.export(model, (x,), "
                "dynamic_shapes=({0: torch.export.Dim('batch')},)), and save that"
            ) from e
        raise DataError(f"the model cannot run on inputs of shape {shapes}: {type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}") from e


def torch_batches(data: Dataset, batch_size: int, limit: int | None) -> Iterator[tuple[torch.Tensor, ...]]:
    for b in data.batches(batch_size, limit):
        yield tuple(torch.from_numpy(np.array(a)) for a in b.inputs)
