"""``qconvert layers``: the module names a recipe can use, with what the recipe does to each and their output shapes.

With an input shape (``--input-shape``, else the recipe's ``input_shape``) the model runs once
on zeros of that shape and each layer's output shape is listed. With a recipe, each layer
says which ``exclude``/``no_clip``/``overrides`` entry applies to it, and a recipe name that
matches no layer is refused (as a build would refuse it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qconvert.core.policy import check_layer_names, matches
from qconvert.errors import DataError
from qconvert.recipe.model import Recipe

__all__ = ["LayerRow", "layer_rows"]


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    #: Output shape on the given input shape; None without one (or for a layer the forward did not call).
    output_shape: tuple[int, ...] | None
    #: What the recipe does here: 'exclude (pattern)', 'override[i] (match)', 'no_clip (pattern)'; empty without a recipe.
    recipe: tuple[str, ...]

    def line(self, with_shape: bool, with_recipe: bool) -> str:
        cells = [self.name, self.kind]
        if with_shape:
            cells.append("x".join(str(d) for d in self.output_shape) if self.output_shape is not None else "-")
        if with_recipe:
            cells.append(", ".join(self.recipe) or "-")
        return "\t".join(cells)


def _output_shapes(model: torch.nn.Module, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for name, mod in model.named_modules():
        if name:
            def hook(_m: torch.nn.Module, _i: object, out: object, name: str = name) -> None:
                t = out[0] if isinstance(out, (tuple, list)) and out else out
                if isinstance(t, torch.Tensor):
                    shapes.setdefault(name, tuple(t.shape))
            hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(torch.zeros(shape))
    except Exception as e:
        raise DataError(f"the model cannot run on an input of shape {shape}: {type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}; fix --input-shape or the recipe's input_shape") from e
    finally:
        for h in hooks:
            h.remove()
    return shapes


def _recipe_notes(recipe: Recipe, name: str) -> tuple[str, ...]:
    notes = [f"exclude ({p})" for p in recipe.exclude if matches(p, name)]
    notes += [f"no_clip ({p})" for p in recipe.no_clip if matches(p, name)]
    notes += [f"overrides[{i}] ({o.match})" for i, o in enumerate(recipe.overrides) if matches(o.match, name)]
    return tuple(notes)


def layer_rows(model: torch.nn.Module, shape: tuple[int, ...] | None, recipe: Recipe | None) -> list[LayerRow]:
    """One row per named module.

    Raises:
        DataError: the model does not run on ``shape``.
        RecipeError: a recipe layer name matches no module.
    """
    names = [n for n, _ in model.named_modules() if n]
    if recipe is not None:
        check_layer_names(recipe, names)
    shapes = _output_shapes(model, shape) if shape is not None else {}
    return [LayerRow(n, type(m).__name__, shapes.get(n), _recipe_notes(recipe, n) if recipe is not None else ())
            for n, m in model.named_modules() if n]
