from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from qconvert.errors import RecipeError
from qconvert.recipe import load_recipe, recipe_from_text
from qconvert.recipe.plugins import check_recipe_targets
from qconvert.recipe.schema import recipe_json_schema_text
from qconvert.targets.registry import TargetRegistry

ROOT = Path(__file__).resolve().parents[1]


def _in_repo_registry() -> TargetRegistry:
    """The targets of plugins/ only (an out-of-tree plugin installed here stays out of the committed schema)."""
    installed = TargetRegistry()
    registry = TargetRegistry(autoload=False)
    for name in installed.names():
        if (ROOT / "plugins" / name).is_dir():
            registry.register(installed.get(name))
    return registry


def test_committed_schema_matches_models() -> None:
    committed = (ROOT / "schemas" / "recipe.schema.json").read_text()
    registry = _in_repo_registry()
    assert sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file()) == registry.names()
    assert json.loads(committed) == json.loads(recipe_json_schema_text(registry)), "run 'make schema' and commit the result"


@pytest.mark.parametrize("path", sorted(ROOT.glob("samples/**/*recipe*.yaml")), ids=lambda p: str(p.relative_to(ROOT)))
def test_sample_recipes_validate(path: Path) -> None:
    check_recipe_targets(load_recipe(path), path, TargetRegistry())


def test_unknown_key_names_file_path_and_line() -> None:
    text = "version: 1\nweights:\n  bits: 8\n  modee: sym\n"
    with pytest.raises(RecipeError) as e:
        recipe_from_text(text, source="r.yaml")
    assert str(e.value).startswith("r.yaml:4: weights.modee: unknown key")


def test_bad_value_names_key_path_and_line() -> None:
    text = "version: 1\ncalibration:\n  method: minmax\n  batch_size: 0\n"
    with pytest.raises(RecipeError, match=r"r.yaml:4: calibration.batch_size: Input should be greater than or equal to 1"):
        recipe_from_text(text, source="r.yaml")


def test_bits_limits_and_modes() -> None:
    with pytest.raises(RecipeError, match="activations.bits"):
        recipe_from_text("activations: {bits: 17}")
    with pytest.raises(RecipeError, match="weights.mode"):
        recipe_from_text("weights: {mode: symmetric}")


def test_invalid_yaml_reports_line() -> None:
    with pytest.raises(RecipeError, match=r"r.yaml:3: not valid YAML"):
        recipe_from_text("version: 1\nweights:\n\tbits: 8\n", source="r.yaml")


def test_override_in_list_reports_its_line() -> None:
    text = "overrides:\n  - match: fc\n    weights: {bits: 4}\n  - match: stem.*\n    activations: {bits: 99}\n"
    with pytest.raises(RecipeError, match=r"r.yaml:5: overrides.1.activations.bits"):
        recipe_from_text(text, source="r.yaml")


def test_recipe_is_immutable() -> None:
    r = recipe_from_text("version: 1")
    with pytest.raises(ValidationError, match="frozen"):
        r.version = 2  # type: ignore[misc]


def test_json_recipe_is_accepted(tmp_path: Path) -> None:
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"version": 1, "weights": {"bits": 4, "mode": "sym"}}))
    assert load_recipe(p).weights.bits == 4
