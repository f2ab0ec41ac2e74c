"""Read a recipe from YAML or JSON, with errors that name file, key path and line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml
from pydantic import ValidationError

from qconvert.errors import RecipeError
from qconvert.recipe.model import Recipe

__all__ = ["load_recipe", "recipe_from_mapping", "recipe_from_text", "recipe_hash"]


def load_recipe(path: str | Path) -> Recipe:
    """Parse and validate a recipe file.

    Raises:
        RecipeError: the file is missing, is not YAML/JSON, or does not validate;
            the message names the file, the key path and the line.
    """
    from qconvert.io.files import check_file, first_line

    path = check_file(path, "recipe file", RecipeError, "pass an existing .yaml or .json file; the smallest recipe is 'version: 1'")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError(f"{path}: cannot read the recipe as UTF-8 text ({first_line(e)}); a recipe is a YAML or JSON file") from e
    if not text.strip():
        raise RecipeError(f"{path}: the recipe file holds no settings; the smallest recipe is 'version: 1'")
    return recipe_from_text(text, source=str(path))


def recipe_from_text(text: str, source: str = "<recipe>") -> Recipe:
    """Parse and validate recipe text (YAML, of which JSON is a subset)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RecipeError(f"{source}{where}: not valid YAML: {problem}") from e
    return _validate({} if data is None else data, root, source)


def recipe_from_mapping(data: object, source: str = "<recipe dict>") -> Recipe:
    """Validate a recipe given as a dict (from Python); errors name the key path, as for a file."""
    return _validate(data, None, source)


def _validate(data: object, root: yaml.Node | None, source: str) -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe must be a mapping of keys to values, got {type(data).__name__}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        key_path = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_of(root, loc)
        where = f":{line}" if line else ""
        extra = f" ({len(e.errors()) - 1} more error(s))" if len(e.errors()) > 1 else ""
        msg = err["msg"].removeprefix("Value error, ")  # our validators' messages stand on their own
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against 'qconvert recipe schema')"
        raise RecipeError(f"{source}{where}: {key_path}: {msg}{extra}") from e


def _line_of(node: yaml.Node | None, loc: tuple[object, ...]) -> int | None:
    """Follow a pydantic error location through the YAML node tree to a 1-based line."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(part)), None)
            key = next((k for k, _ in node.value if k.value == str(part)), None)
            if key is None:
                break
            line = key.start_mark.line + 1
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def recipe_hash(recipe: Recipe) -> str:
    """A stable hash of the validated recipe (defaults included), for manifests."""
    canonical = json.dumps(recipe.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
