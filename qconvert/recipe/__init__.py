"""Recipe models, loading and JSON Schema."""

from qconvert.recipe.load import load_recipe, recipe_from_text, recipe_hash
from qconvert.recipe.model import (
    CalibrationConfig,
    Gates,
    LayerOverride,
    Preprocess,
    QScheme,
    Recipe,
)
from qconvert.recipe.schema import recipe_json_schema

__all__ = [
    "CalibrationConfig",
    "Gates",
    "LayerOverride",
    "Preprocess",
    "QScheme",
    "Recipe",
    "load_recipe",
    "recipe_from_text",
    "recipe_hash",
    "recipe_json_schema",
]
