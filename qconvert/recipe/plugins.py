"""The recipe's per-target sections checked against the installed target plugins.

The recipe model cannot know which targets exist: plugins are installed separately. So
the envelope is validated first (``load_recipe``), then this module checks every target
name under ``targets``, ``target_gates`` and ``optimize_for`` against the registry, and
validates each ``targets.<name>`` section with that target's own options model. Errors
name the file and line, like every recipe error; a typo never passes silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from qconvert.errors import RecipeError, did_you_mean
from qconvert.recipe.model import Recipe
from qconvert.targets.base import TargetOptions
from qconvert.targets.registry import TargetRegistry

__all__ = ["TargetSections", "check_recipe_targets", "gate_warnings", "line_in_file"]

#: Recipe keys whose mapping keys are target names.
TARGET_KEYED = ("targets", "target_gates", "optimize_for")


@dataclass(frozen=True)
class TargetSections:
    """Every ``targets.<name>`` section, parsed by its target's own options model."""

    options: dict[str, TargetOptions]


def check_recipe_targets(recipe: Recipe, source: str | Path, registry: TargetRegistry) -> TargetSections:
    """Refuse unknown target names and invalid target options, with file:line.

    Raises:
        RecipeError: a name under ``targets``/``target_gates``/``optimize_for`` is not an
            installed target (the installed names are suggested), or a target's section does
            not validate against that target's options model.
        PluginError: a named target's plugin is installed but broken.
    """
    known = registry.names()
    keyed: dict[str, list[str]] = {
        "targets": list(recipe.targets),
        "target_gates": list(recipe.target_gates),
        "optimize_for": list(recipe.optimize_for) if isinstance(recipe.optimize_for, dict) else [],
    }
    for key, names in keyed.items():
        for name in names:
            if name not in known:
                where = _where(source, (key, name))
                raise RecipeError(f"{where}: {key}.{name}: no such target{did_you_mean(name, known)}; "
                                  f"installed targets: {', '.join(known) or 'none'} ('qconvert targets' lists them)")
    parsed: dict[str, TargetOptions] = {}
    for name, raw in recipe.targets.items():
        target = registry.get(name)
        try:
            parsed[name] = target.parse_options(raw, str(source))
        except RecipeError as e:
            cause = e.__cause__
            if not isinstance(cause, ValidationError):
                raise
            err = cause.errors()[0]
            loc = ("targets", name, *err["loc"])
            if err["type"] == "extra_forbidden":
                key = str(err["loc"][-1])
                msg = f"unknown option of target '{name}'{did_you_mean(key, target.Options.model_fields)}; " \
                      "'qconvert recipe schema' lists its options"
            else:
                msg = err["msg"].removeprefix("Value error, ")
            more = f" ({len(cause.errors()) - 1} more error(s))" if len(cause.errors()) > 1 else ""
            raise RecipeError(f"{_where(source, loc)}: {'.'.join(str(p) for p in loc)}: {msg}{more}") from cause
    return TargetSections(parsed)


def gate_warnings(recipe: Recipe, building: list[str] | tuple[str, ...]) -> list[str]:
    """One warning per ``target_gates`` entry for an installed target this build does not build."""
    return [f"recipe target_gates.{name}: '{name}' is not being built (--target {' --target '.join(building)}); "
            "its gates are not checked" for name in recipe.target_gates if name not in building]


def _where(source: str | Path, loc: tuple[object, ...]) -> str:
    line = line_in_file(source, loc)
    return f"{source}:{line}" if line else str(source)


def line_in_file(source: str | Path, loc: tuple[object, ...]) -> int | None:
    """The 1-based line of a key path in a YAML/JSON recipe file; None where it cannot be told."""
    from qconvert.recipe.load import _line_of

    path = Path(source)
    if path.suffix.lower() not in (".yaml", ".yml", ".json") or not path.is_file():
        return None
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return _line_of(root, loc)
