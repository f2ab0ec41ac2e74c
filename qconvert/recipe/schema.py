"""The recipe's JSON Schema, generated from the pydantic models."""

from __future__ import annotations

import json

from qconvert.recipe.model import Recipe

__all__ = ["recipe_json_schema", "recipe_json_schema_text"]


def recipe_json_schema() -> dict[str, object]:
    schema = Recipe.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://qconvert.dev/schemas/recipe.schema.json"
    return schema


def recipe_json_schema_text() -> str:
    """The exact text committed as schemas/recipe.schema.json."""
    return json.dumps(recipe_json_schema(), indent=2, sort_keys=True) + "\n"
