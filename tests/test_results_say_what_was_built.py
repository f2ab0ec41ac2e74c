"""Reports and manifests describe what was built: both recipe hashes, weight methods, effective schemes, layers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from qconvert.cli import main
from qconvert.core.capture import capture
from qconvert.core.quantize import calibrate, quantize
from qconvert.recipe import recipe_from_text
from qconvert.testing import digits_build_args

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_and_report_carry_the_file_hash_and_the_effective_hash(onnx_build: Path, digits: dict[str, Path]) -> None:
    report = json.loads((onnx_build / "report.json").read_text())
    manifest = json.loads((onnx_build / "onnx" / "manifest.json").read_text())
    file_hash = hashlib.sha256(digits["recipe"].read_bytes()).hexdigest()
    assert report["recipe_file_sha256"] == manifest["recipe_file_sha256"] == file_hash
    assert report["targets"]["onnx"]["recipe_hash"] == manifest["recipe_hash"]
    md = (onnx_build / "report.md").read_text()
    assert file_hash[:12] in md and manifest["recipe_hash"][:12] in md


def test_weight_range_methods_are_labelled_as_used() -> None:
    # conv -> relu -> conv
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3)).eval()
    torch.manual_seed(0)
    x = torch.randn(8, 1, 8, 8)
    cap = capture(net, (x[:2],))
    recipe = recipe_from_text("version: 1\nweight_method: mse\noverrides: [{match: '2', weight_method: minmax}]\n")
    qm = quantize(cap, recipe, calibrate(cap, recipe, [(x,)]))
    methods = {q.module: q.method for q in qm.qparams if q.role == "weight"}
    assert methods == {"0": "mse", "2": "minmax"}


def test_report_shows_the_schemes_every_tensor_got_not_the_recipes(digits: dict[str, Path], tmp_path: Path) -> None:
    """The sample recipe asks asym_u activations; TensorRT makes every one sym, and the report must say sym."""
    out = tmp_path / "OUT"
    r = CliRunner().invoke(main, digits_build_args(digits, out, "tensorrt") + ["--no-latency"])
    assert r.exit_code == 0, r.output
    o = json.loads((out / "report.json").read_text())["targets"]["tensorrt"]["optimize_for"]
    assert o["activations"] == "sym" and o["weights"].startswith("sym")
    assert "activations `sym`" in (out / "report.md").read_text()
    manifest = json.loads((out / "tensorrt" / "manifest.json").read_text())
    assert {q["mode"] for q in manifest["quantization"] if q["role"] == "activation"} == {"sym"}


def test_layers_honours_input_shape_and_recipe(digits: dict[str, Path], tmp_path: Path) -> None:
    base = ["layers", "--model", f"{digits['model']}:build", "--weights", str(digits["weights"])]
    shaped = CliRunner().invoke(main, [*base, "--input-shape", "2,1,16,16"])
    assert shaped.exit_code == 0, shaped.output
    rows = {line.split("\t")[0]: line.split("\t") for line in shaped.output.splitlines()[1:]}
    assert rows["fc"][2] == "2x10"
    with_recipe = CliRunner().invoke(main, [*base, "--recipe", str(digits["recipe"])])
    rows = {line.split("\t")[0]: line.split("\t") for line in with_recipe.output.splitlines()[1:]}
    assert rows["fc"][-1] == "no_clip (fc)" and rows["fc"][2] == "1x10"  # the recipe's input_shape gives the shapes
    bad = tmp_path / "r.yaml"
    bad.write_text("version: 1\nexclude: [fcc]\n")
    r = CliRunner().invoke(main, [*base, "--recipe", str(bad)])
    assert r.exit_code == 2 and "'fcc' matches no layer of the model (did you mean: fc?)" in r.output
    r = CliRunner().invoke(main, [*base, "--input-shape", "1,3,16,16"])
    assert r.exit_code == 2 and r.output.startswith("error: the model cannot run on an input of shape (1, 3, 16, 16)")


def test_readme_states_the_batch_of_each_target(onnx_build: Path) -> None:
    import onnx

    readme = (ROOT / "README.md").read_text()
    assert "dynamic in every artifact" not in readme
    for target in ("onnx", "tvm", "tensorrt", "pytorch", "tflite", "tidl"):
        assert f"| {target} |" in readme
    dim = onnx.load(onnx_build / "onnx" / "model.onnx").graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param and not dim.dim_value  # "onnx: dynamic"


@pytest.mark.parametrize("ext", ["tflite"])
def test_tflite_batch_is_fixed_as_the_readme_says(edge_build: Path, ext: str) -> None:
    if not (edge_build / "tflite").is_dir():
        pytest.skip("tflite not built here")
    from ai_edge_litert.interpreter import Interpreter

    shape = Interpreter(str(edge_build / "tflite" / "model.tflite")).get_input_details()[0]["shape_signature"]
    assert shape[0] == 1
