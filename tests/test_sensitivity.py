"""Per-layer sensitivity finds a deliberately fragile layer; auto_fallback keeps it in float and passes the gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from qconvert.cli import main

# x(16) -> fc1 -> relu -> fc2 -> relu -> fc3 -> 4 logits. fc1's unit 0 is always 0 after its ReLU,
# so fc2's column 0 never matters in float; set to 1000 it makes every row's int8 weight step ~8,
# which rounds fc2's real weights (~0.2) to zero: fc2 alone breaks the model.
FRAGILE = '''
import torch
from torch import nn

class Fragile(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fc1, self.fc2, self.fc3 = nn.Linear(16, 32), nn.Linear(32, 32), nn.Linear(32, 4)
        self.act1, self.act2 = nn.ReLU(), nn.ReLU()
        with torch.no_grad():
            for fc in (self.fc1, self.fc2, self.fc3):
                fc.weight.copy_(torch.randn(fc.weight.shape, generator=g) / fc.in_features ** 0.5)
                fc.bias.zero_()
            self.fc1.weight[0].zero_()
            self.fc1.bias[0] = -1.0
            self.fc2.weight[:, 0] = 1000.0

    def forward(self, x):
        return self.fc3(self.act2(self.fc2(self.act1(self.fc1(x)))))

def build():
    return Fragile()
'''
RECIPE = "version: 1\ncalibration: {method: minmax, num_samples: 512, batch_size: 128}\ngates: {max_accuracy_drop: 2.0}\n"


@pytest.fixture(scope="module")
def fragile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The model file, data labelled by the float model itself (float accuracy 100 %), and recipes."""
    import torch

    from qconvert.io.model import load_model

    d = tmp_path_factory.mktemp("fragile")
    (d / "model.py").write_text(FRAGILE)
    x = np.random.default_rng(0).standard_normal((512, 16)).astype(np.float32)
    with torch.no_grad():
        y = load_model(f"{d / 'model.py'}:build")(torch.from_numpy(x)).argmax(1).numpy()
    np.savez(d / "data.npz", x=x, y=y)
    (d / "plain.yaml").write_text(RECIPE)
    (d / "fallback.yaml").write_text(RECIPE + "auto_fallback: {metric: accuracy, max_layers: 2}\n")
    return {"model": d / "model.py", "data": d / "data.npz", "plain": d / "plain.yaml", "fallback": d / "fallback.yaml", "dir": d}


def _build(f: dict[str, Path], recipe: str, out: Path) -> tuple[int, str]:
    args = ["build", "--model", f"{f['model']}:build", "--recipe", str(f[recipe]), "--calib-data", str(f["data"]),
            "--eval-data", str(f["data"]), "--target", "onnx", "--out", str(out)]
    r = CliRunner().invoke(main, args)
    return r.exit_code, r.output


def test_sensitivity_names_the_fragile_layer_first(fragile: dict[str, Path]) -> None:
    js = fragile["dir"] / "sensitivity.json"
    r = CliRunner().invoke(main, ["sensitivity", "--model", f"{fragile['model']}:build", "--recipe", str(fragile["plain"]),
                                  "--calib-data", str(fragile["data"]), "--eval-data", str(fragile["data"]),
                                  "--metric", "accuracy", "--json", str(js)])
    assert r.exit_code == 0, r.output
    first_row = r.output.splitlines()[1].split()
    assert first_row[:3] == ["1", "fc2", "Linear"]
    ranking = json.loads(js.read_text())
    top = ranking["layers"][0]
    assert top["layer"] == "fc2"
    assert top["regain_rank"] == 1  # keeping fc2 alone in float also regains the most
    assert top["loss"] > 50 and all(row["loss"] < 5 for row in ranking["layers"][1:])


def test_auto_fallback_passes_the_gate_plain_ptq_fails(fragile: dict[str, Path], tmp_path: Path) -> None:
    import onnxruntime as ort

    from qconvert.recipe import load_recipe, recipe_hash

    code, output = _build(fragile, "plain", tmp_path / "plain")
    assert code == 3 and "gate failed: onnx: accuracy drop" in output

    out = tmp_path / "fallback"
    code, output = _build(fragile, "fallback", out)
    assert code == 0, output
    report = json.loads((out / "report.json").read_text())
    fb = report["fallback"]
    assert fb["layers"][0] == "fc2" and len(fb["layers"]) <= 2 and fb["passed"]
    assert fb["steps"][0]["layers"] == [] and not fb["steps"][0]["simulation_passed"]
    # the written recipe is what the artifact was built from: committing it reproduces the build
    written = load_recipe(out / fb["recipe_file"])
    assert written.auto_fallback is None and "fc2" in written.exclude
    manifest = json.loads((out / "onnx" / "manifest.json").read_text())
    assert recipe_hash(written) == manifest["recipe_hash"]
    # and the artifact meets the gate, measured here in onnxruntime
    z = np.load(fragile["data"])
    (logits,) = ort.InferenceSession(str(out / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": z["x"]})
    assert 100.0 - 100.0 * float(np.mean(logits.argmax(1) == z["y"])) <= 2.0


def test_auto_fallback_keep_int16_on_onnx_builds_16_bit_qdq(fragile: dict[str, Path], tmp_path: Path) -> None:
    """keep: int16 on onnx: the kept layer gets 16-bit weights and activations, exported at opset 21 and passing the gate."""
    import onnx

    from qconvert.recipe import load_recipe

    # fc2's 1000-weight column leaves its real weights ~7 steps even at 16 bits: a 5 pp gate
    recipe = RECIPE.replace("max_accuracy_drop: 2.0", "max_accuracy_drop: 5.0")
    (fragile["dir"] / "int16.yaml").write_text(recipe + "auto_fallback: {metric: accuracy, max_layers: 2, keep: int16}\n")
    out = tmp_path / "int16"
    code, output = _build({**fragile, "int16": fragile["dir"] / "int16.yaml"}, "int16", out)
    assert code == 0, output
    fb = json.loads((out / "report.json").read_text())["fallback"]
    assert fb["layers"][0] == "fc2" and fb["keep"] == "int16" and fb["passed"] and not fb["steps"][0]["simulation_passed"]
    wide = next(o for o in load_recipe(out / fb["recipe_file"]).overrides if o.match == "fc2")
    assert wide.weights is not None and wide.activations is not None and (wide.weights.bits, wide.activations.bits) == (16, 16)
    model = onnx.load(out / "onnx" / "model.onnx")
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 21
    int16_weights = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT16]
    assert int16_weights  # fc2's weights


@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_sensitivity_keep_int16_runs_for_16_bit_targets(fragile: dict[str, Path], tmp_path: Path, target: str) -> None:
    """tflite keeps its 16x8 form (8-bit weights) for the layer kept at int16; onnx takes 16-bit weights too."""
    out = tmp_path / "s.json"
    args = ["sensitivity", "--model", f"{fragile['model']}:build", "--recipe", str(fragile["plain"]), "--calib-data", str(fragile["data"]),
            "--eval-data", str(fragile["data"]), "--keep", "int16", "--target", target, "--json", str(out)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    sens = json.loads(out.read_text())
    assert sens["keep"] == "int16" and {row["layer"] for row in sens["layers"]} >= {"fc1", "fc2", "fc3"}


def test_auto_fallback_screens_each_variant_per_target_with_that_targets_plan(fragile: dict[str, Path], tmp_path: Path) -> None:
    """Each target's screen is the simulation a build for that target quantizes (its TargetPlan): step 0 on
    onnx and on pytorch gives the figures 'qconvert sensitivity --target' gives for plain PTQ on each."""
    out = tmp_path / "two"
    args = ["build", "--model", f"{fragile['model']}:build", "--recipe", str(fragile["fallback"]), "--calib-data", str(fragile["data"]),
            "--eval-data", str(fragile["data"]), "--target", "onnx", "--target", "pytorch", "--out", str(out), "--no-latency"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    fb = json.loads((out / "report.json").read_text())["fallback"]
    assert fb["screened"] == "per target" and fb["ranked_on"] in ("onnx", "pytorch")
    assert all([t["target"] for t in step["targets"]] == ["onnx", "pytorch"] for step in fb["steps"])
    assert "screened per target (onnx, pytorch)" in (out / "report.md").read_text()
    for i, target in enumerate(("onnx", "pytorch")):
        js = tmp_path / f"{target}.json"
        r = CliRunner().invoke(main, ["sensitivity", "--model", f"{fragile['model']}:build", "--recipe", str(fragile["plain"]),
                                      "--calib-data", str(fragile["data"]), "--eval-data", str(fragile["data"]), "--metric", "accuracy",
                                      "--target", target, "--json", str(js)])
        assert r.exit_code == 0, r.output
        assert fb["steps"][0]["targets"][i]["simulated"] == json.loads(js.read_text())["quantized"]
