"""The recipe validated whole against the installed targets: no typo under targets, target_gates or
optimize_for passes silently, and each target's section is checked by that target's own options model."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from qconvert.cli import main
from qconvert.targets.registry import TargetRegistry
from qconvert.testing import digits_build_args


def _validate(tmp_path: Path, text: str) -> tuple[int, str]:
    p = tmp_path / "recipe.yaml"
    p.write_text(text)
    r = CliRunner().invoke(main, ["recipe", "validate", str(p)])
    return r.exit_code, r.output.strip()


@pytest.mark.parametrize("text, expected", [
    ("version: 1\ntargets:\n  onnxx: {}\n", "recipe.yaml:3: targets.onnxx: no such target (did you mean: onnx?)"),
    ("version: 1\ntarget_gates:\n  onxn: {min_sqnr_db: 99}\n", "recipe.yaml:3: target_gates.onxn: no such target (did you mean: onnx?)"),
    ("version: 1\noptimize_for:\n  tflit: speed\n", "recipe.yaml:3: optimize_for.tflit: no such target (did you mean: tflite?)"),
    ("version: 1\ntargets:\n  tidl:\n    soc: am68pa\n    per_chanel_depthwise: true\n",
     "recipe.yaml:5: targets.tidl.per_chanel_depthwise: unknown option of target 'tidl' (did you mean: per_channel_depthwise?)"),
    ("version: 1\ntargets:\n  tidl:\n    soc: am99\n", "recipe.yaml:4: targets.tidl.soc: Input should be"),
], ids=["unknown target", "unknown target_gates name", "unknown optimize_for name", "unknown tidl option", "bad tidl option value"])
def test_recipe_validate_names_file_line_and_suggests(tmp_path: Path, text: str, expected: str) -> None:
    code, out = _validate(tmp_path, text)
    assert code == 2, out
    assert out.startswith("error: ") and expected in out, out
    assert len(out.splitlines()) == 1
    assert "installed targets" in out or "option" in out or "Input should be" in out


def test_recipe_validate_lists_the_targets_it_checked_against(digits: dict[str, Path]) -> None:
    r = CliRunner().invoke(main, ["recipe", "validate", str(digits["recipe"])])
    assert r.exit_code == 0
    for name in TargetRegistry().names():
        assert name in r.output


def test_schema_holds_every_installed_target_and_refuses_typos(digits: dict[str, Path]) -> None:
    r = CliRunner().invoke(main, ["recipe", "schema"])
    assert r.exit_code == 0
    schema = json.loads(r.output)
    names = TargetRegistry().names()
    assert sorted(schema["properties"]["targets"]["properties"]) == names
    assert all(n in schema["$comment"] for n in names)
    validator = jsonschema.Draft202012Validator(schema)
    ok = yaml.safe_load(digits["recipe"].read_text()) | {"targets": {"tidl": {"soc": "am69a"}}, "target_gates": {"onnx": {}}}
    assert not list(validator.iter_errors(ok))
    for bad in ({"targets": {"onnxx": {}}}, {"targets": {"tidl": {"socc": "am69a"}}}, {"target_gates": {"onxn": {}}},
                {"optimize_for": {"onxn": "speed"}}):
        assert list(validator.iter_errors({"version": 1} | bad)), bad


def _build(digits: dict[str, Path], tmp_path: Path, recipe_text: str) -> tuple[int, str, Path]:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(digits["recipe"].read_text() + recipe_text)
    out = tmp_path / "OUT"
    args = digits_build_args(digits, out, "onnx") + ["--no-latency"]
    args[args.index("--recipe") + 1] = str(recipe)
    r = CliRunner().invoke(main, args)
    return r.exit_code, r.output, out


def test_target_gates_for_an_unknown_target_fails_with_exit_2(digits: dict[str, Path], tmp_path: Path) -> None:
    code, out, o = _build(digits, tmp_path, "target_gates:\n  onxn: {min_sqnr_db: 99}\n")
    assert code == 2, out
    assert "target_gates.onxn: no such target (did you mean: onnx?)" in out
    assert not o.exists()


def test_target_gates_for_a_known_target_not_built_warns(digits: dict[str, Path], tmp_path: Path) -> None:
    code, out, o = _build(digits, tmp_path, "target_gates:\n  tflite: {min_sqnr_db: 99}\n")
    assert code == 0, out
    assert "warning: recipe target_gates.tflite: 'tflite' is not being built" in out
    report = json.loads((o / "report.json").read_text())
    assert any("target_gates.tflite" in w for w in report["warnings"])
