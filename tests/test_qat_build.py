"""QAT checkpoints and `qconvert build --model ckpt.pt`: learned ranges as they are, refusals of foreign files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from test_qat import W4A4, Tiny, tiny, tiny_data

from qconvert import qat
from qconvert.cli import main
from qconvert.qat.checkpoint import _digest, save
from qconvert.recipe import recipe_from_text

RECIPE = W4A4 + (
    "overrides: [{match: fc, weights: {bits: 4, mode: sym, granularity: per_channel}, qat_weight_ranges: lsq}]\n"
    "qat: {activation_ranges: lsq, freeze_bn_after: 3}\n"
)


def _trained(model: torch.nn.Module, steps: int = 6) -> qat.QATModel:
    """A few real training steps, so ranges, weights and BatchNorm statistics all move."""
    q = qat.prepare(model, recipe_from_text(RECIPE), tiny_data(2), calibration=[(tiny_data(32, seed=5),)])
    opt = torch.optim.Adam(q.parameters(), lr=1e-2)
    x, y = tiny_data(32, seed=2), torch.arange(32) % 3
    for _ in range(steps):
        loss = F.cross_entropy(q(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return q.eval()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("qat")
    model = _trained(tiny())
    ckpt = save(model, d / "tiny.qat.pt")
    x = tiny_data(40, seed=3)
    np.savez(d / "eval.npz", x=x.numpy(), y=(np.arange(40) % 3).astype(np.int64))
    return {"model": model, "ckpt": ckpt, "eval": d / "eval.npz", "x": x, "dir": d}


def _build(args: list[str]) -> object:
    return CliRunner().invoke(main, ["build", *args])


def test_checkpoint_loads_with_weights_only_and_resumes_exactly(trained: dict) -> None:
    raw = torch.load(trained["ckpt"], weights_only=True)
    assert raw["format"] == "qconvert-qat" and json.loads(raw["recipe"])["qat"]["freeze_bn_after"] == 3
    again = qat.load(trained["ckpt"]).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(trained["x"]), trained["model"](trained["x"]), rtol=0, atol=0)
    assert int(again.steps) == 6


def test_onnx_from_checkpoint_matches_the_qat_model_within_one_step(trained: dict) -> None:
    out = trained["dir"] / "OUT"
    result = _build(["--model", str(trained["ckpt"]), "--eval-data", str(trained["eval"]), "--target", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["calibration"]["ranges"] == "learned (QAT)"
    with torch.no_grad():  # the float reference is the model before QAT, which the checkpoint carries
        float_acc = 100.0 * float(np.mean(tiny()(trained["x"]).argmax(1).numpy() == np.arange(40) % 3))
    assert report["float"]["accuracy"] == pytest.approx(float_acc)
    assert "ranges: learned (QAT)" in (out / "report.md").read_text()
    manifest = json.loads((out / "onnx" / "manifest.json").read_text())
    scale = manifest["tolerance"]["output_scale"]
    sess = ort.InferenceSession(str(out / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"x": trained["x"].numpy()})
    with torch.no_grad():
        expected = trained["model"](trained["x"]).numpy()
    assert np.abs(got - expected).max() / scale <= 1.0 + 1e-3
    # every grid is the trained one: activations, and the fc weights whose step sizes were learned
    fqs = {fq.spec.key: fq for fq in trained["model"].fake_quants()}
    for q in manifest["quantization"]:
        if q["role"] == "activation" or q["key"] == "fc.weight":
            learned, _ = fqs[q["key"]].qparams()
            assert q["scale_max"] == pytest.approx(float(learned.max()), rel=1e-6), q["key"]


def _edited(raw: dict) -> dict:
    raw["activations"]["relu"] = raw["activations"]["relu"] * 2  # a hand-widened range
    return raw


def _foreign_weights(raw: dict) -> dict:
    other = torch.load(save(_trained(tiny(seed=7)), Path(raw["_dir"]) / "other.qat.pt"), weights_only=True)
    raw["program"] = other["program"]
    return raw


class NoResidual(Tiny):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu1(self.bn1(self.conv1(x)))
        return self.fc(torch.flatten(self.pool(self.relu2(self.conv2(y))), 1))


def _foreign_graph(raw: dict) -> dict:
    torch.manual_seed(0)
    other = torch.load(save(_trained(NoResidual().eval()), Path(raw["_dir"]) / "other.qat.pt"), weights_only=True)
    raw["program"] = other["program"]
    return raw


@pytest.mark.parametrize(("tamper", "rehash", "message"), [
    (_edited, False, "does not match the hash"),
    (_foreign_weights, True, "weights are not the ones its ranges were trained with"),
    (_foreign_graph, True, "is not the one its ranges were learned on"),
], ids=["edited-by-hand", "program-from-another-training", "program-from-another-model"])
def test_tampered_checkpoints_are_refused_in_one_line(trained: dict, tmp_path: Path, tamper: object, rehash: bool, message: str) -> None:
    raw = torch.load(trained["ckpt"], weights_only=True)
    raw["_dir"] = str(tmp_path)
    raw = tamper(raw)  # type: ignore[operator]
    del raw["_dir"]
    if rehash:  # someone who also recomputed the hash
        raw["digest"] = _digest(raw)
    bad = tmp_path / "bad.qat.pt"
    torch.save(raw, bad)
    out = tmp_path / "OUT"
    result = _build(["--model", str(bad), "--eval-data", str(trained["eval"]), "--target", "onnx", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".OUT*"))


def test_plain_state_dict_recipe_mismatch_and_calibration_data_are_refused(trained: dict, tmp_path: Path) -> None:
    plain = tmp_path / "plain.pt"
    torch.save(tiny().state_dict(), plain)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(W4A4.replace("bits: 4, mode: asym_u", "bits: 8, mode: asym_u"))
    base = ["--eval-data", str(trained["eval"]), "--target", "onnx", "--out", str(tmp_path / "OUT")]
    cases = [
        (["--model", str(plain)], "not a QAT checkpoint"),
        (["--model", str(trained["ckpt"]), "--recipe", str(recipe)], "differs from the recipe"),
        (["--model", str(trained["ckpt"]), "--calib-data", str(trained["eval"])], "drop --calib-data"),
    ]
    for args, message in cases:
        result = _build(args + base)
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "OUT").exists()
