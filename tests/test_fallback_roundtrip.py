"""recipe.fallback.yaml reproduces the build: rebuilding from it gives bit-identical artifacts.

The written recipe must keep exactly the keys the recipe set: ``optimize_for`` adapts only
schemes a recipe leaves out, so a scheme set explicitly to its default value (dropped by
``exclude_defaults``) came back as the target's fast type (asym_s on onnx arm64, not asym_u).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from qconvert.cli import main
from qconvert.recipe import load_recipe, recipe_hash
from qconvert.sensitivity.fallback import write_recipe
from qconvert.targets.plan import plan_for
from qconvert.targets.registry import TargetRegistry
from qconvert.testing import digits_build_args

#: Sets activations to exactly the default scheme; onnx on arm64 would otherwise take asym_s.
EXPLICIT_DEFAULTS = """version: 1
input_shape: [1, 1, 16, 16]
activations: {bits: 8, mode: asym_u}
calibration: {num_samples: 128, batch_size: 64}
targets:
  onnx: {device: arm64}
on_unsupported: adapt
gates: {min_sqnr_db: 99}
auto_fallback: {metric: sqnr, max_layers: 1}
"""

#: Files no two builds write alike, whatever the recipe: TVM's compiled library (measured: two builds of the
#: digits sample from one recipe differ in 144 bytes of model.so, its 20-byte GNU build-id and 124 bytes of
#: .text). What it is compiled from (model.onnx) and what it computes (golden/) are compared bit for bit.
NOT_REPRODUCIBLE = {"tvm": {"model.so"}}


def _effective_activations(recipe_path: Path) -> str:
    registry = TargetRegistry()
    t = registry.get("onnx")
    r = load_recipe(recipe_path)
    return plan_for(r, t, t.parse_options(r.targets.get("onnx"))).recipe.activations.mode


def test_written_recipe_keeps_schemes_set_to_their_defaults(tmp_path: Path) -> None:
    src = tmp_path / "recipe.yaml"
    src.write_text(EXPLICIT_DEFAULTS)
    original = load_recipe(src)
    write_recipe(tmp_path / "fallback.yaml", original.model_copy(update={"auto_fallback": None}), ("stem",), "float", str(src))
    written = load_recipe(tmp_path / "fallback.yaml")
    assert "activations" in written.model_fields_set
    assert _effective_activations(src) == _effective_activations(tmp_path / "fallback.yaml") == "asym_u"
    assert written.model_dump() == original.model_copy(update={"auto_fallback": None}).model_dump()


def _artifact_files(directory: Path) -> dict[str, bytes]:
    """Every file a target wrote, except the manifest (it names the recipe file and its hash)."""
    skip = {"manifest.json"} | NOT_REPRODUCIBLE.get(directory.name, set())
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file() and p.name not in skip}


def _roundtrip(digits: dict[str, Path], tmp_path: Path, targets: list[str]) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(EXPLICIT_DEFAULTS)
    first, second = tmp_path / "first", tmp_path / "second"
    args = digits_build_args(digits, first, *targets) + ["--no-latency"]
    args[args.index("--recipe") + 1] = str(recipe)
    r1 = CliRunner().invoke(main, args)
    assert r1.exit_code == 3, r1.output  # min_sqnr_db 99 fails whatever is kept; the recipe is written anyway
    report1 = json.loads((first / "report.json").read_text())
    assert report1["fallback"]["recipe_file"] == "recipe.fallback.yaml" and report1["fallback"]["layers"]
    args2 = digits_build_args(digits, second, *targets) + ["--no-latency"]
    args2[args2.index("--recipe") + 1] = str(first / "recipe.fallback.yaml")
    r2 = CliRunner().invoke(main, args2)
    assert r2.exit_code == 3, r2.output
    report2 = json.loads((second / "report.json").read_text())
    for t in targets:
        a, b = _artifact_files(first / t), _artifact_files(second / t)
        assert a.keys() == b.keys(), t
        differ = [name for name in a if a[name] != b[name]]
        assert not differ, f"{t}: rebuilt from recipe.fallback.yaml, these files differ: {differ}"
        m1 = json.loads((first / t / "manifest.json").read_text())
        m2 = json.loads((second / t / "manifest.json").read_text())
        assert m1["recipe_hash"] == m2["recipe_hash"] == report1["targets"][t]["recipe_hash"] == report2["targets"][t]["recipe_hash"]
        assert m1["recipe_file_sha256"] != m2["recipe_file_sha256"]
    written = load_recipe(first / "recipe.fallback.yaml")
    assert recipe_hash(written) == recipe_hash(load_recipe(recipe).model_copy(update={"auto_fallback": None, "exclude": written.exclude}))
    if "onnx" in targets:
        chosen = [r["targets"]["onnx"]["optimize_for"]["activations"] for r in (report1, report2)]
        assert chosen == ["asym_u", "asym_u"]


def test_fallback_recipe_rebuilds_bit_identical_onnx(digits: dict[str, Path], tmp_path: Path) -> None:
    _roundtrip(digits, tmp_path, ["onnx"])


def _available() -> list[str]:
    registry = TargetRegistry()
    return [n for n in registry.names() if registry.get(n).available().ok]


@pytest.mark.slow
@pytest.mark.parametrize("target", ["tflite", "tvm", "pytorch", "tensorrt", "tidl"])
def test_fallback_recipe_rebuilds_bit_identical_every_target(digits: dict[str, Path], tmp_path: Path, target: str) -> None:
    if target not in _available():
        pytest.skip(f"target {target} is not available here: pip install -e plugins/{target}")
    _roundtrip(digits, tmp_path, [target])
