"""The recipe's JSON Schema, generated from the pydantic models and the installed targets' options."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from qconvert.recipe.model import Recipe

if TYPE_CHECKING:
    from qconvert.targets.registry import TargetRegistry

__all__ = ["recipe_json_schema", "recipe_json_schema_text"]


def recipe_json_schema(registry: TargetRegistry | None = None) -> dict[str, Any]:
    """The schema; with a registry, ``targets``, ``target_gates`` and ``optimize_for`` take only
    its target names, and each ``targets.<name>`` is that target's own options schema."""
    schema: dict[str, Any] = Recipe.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://qconvert.dev/schemas/recipe.schema.json"
    if registry is not None:
        _with_targets(schema, registry)
    return schema


def _with_targets(schema: dict[str, Any], registry: TargetRegistry) -> None:
    names = registry.names()
    defs: dict[str, Any] = schema.setdefault("$defs", {})
    props: dict[str, Any] = schema["properties"]
    sections: dict[str, Any] = {}
    for name in names:
        options = registry.get(name).Options.model_json_schema(ref_template="#/$defs/{model}")
        for key, sub in options.pop("$defs", {}).items():
            defs.setdefault(key, sub)
        title = f"TargetOptions_{name}"
        defs[title] = options
        sections[name] = {"$ref": f"#/$defs/{title}"}
    props["targets"] = {**props["targets"], "properties": sections, "additionalProperties": False}
    gates = props["target_gates"]
    props["target_gates"] = {**gates, "properties": {n: gates["additionalProperties"] for n in names}, "additionalProperties": False}
    opt = props["optimize_for"]
    for branch in opt.get("anyOf", []):
        if branch.get("type") == "object":
            branch["propertyNames"] = {"enum": names}
    schema["$comment"] = f"Target sections of the installed target plugins: {', '.join(names) or 'none'}."


def recipe_json_schema_text(registry: TargetRegistry | None = None) -> str:
    """The exact text committed as schemas/recipe.schema.json (with the in-repo targets' registry)."""
    return json.dumps(recipe_json_schema(registry), indent=2, sort_keys=True) + "\n"
