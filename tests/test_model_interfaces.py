"""Model interfaces real code has: structured outputs (tuple, dict, dataclass, ModelOutput), several
outputs each verified and gated, parametrized weights (weight_norm, spectral norm) and tied weights.

Every build runs the artifact in onnxruntime; expectations come from the models' own structure,
never from qconvert's code.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from qconvert.cli import main
from qconvert.core.capture import capture
from qconvert.core.outputs import flatten, output_names
from qconvert.core.parametrize import is_parametrized

MODELS = '''
import dataclasses
import torch
from torch import nn
from torch.nn.utils import parametrizations


class Heads(nn.Module):
    """x -> conv -> relu -> {"logits": fc(pool), "aux": [conv map, conv map * 2 - 1]}"""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 5)

    def forward(self, x):
        f = torch.relu(self.conv(x))
        return {"logits": self.fc(f.mean((2, 3))), "aux": [f, f * 2 - 1]}


@dataclasses.dataclass
class Out:
    logits: torch.Tensor
    features: torch.Tensor


class DataclassOut(nn.Module):
    """x -> conv -> relu -> Out(logits=fc(pool), features=pool)"""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 5)

    def forward(self, x):
        p = torch.relu(self.conv(x)).mean((2, 3))
        return Out(self.fc(p), p)


class Parametrized(nn.Module):
    """x -> weight_norm conv (parametrize) -> relu -> legacy weight_norm conv -> spectral_norm linear -> tied linear"""

    def __init__(self):
        super().__init__()
        self.a = parametrizations.weight_norm(nn.Conv2d(3, 8, 3, padding=1), dim=2)
        self.b = torch.nn.utils.weight_norm(nn.Conv2d(8, 8, 3, padding=1))
        self.c = torch.nn.utils.spectral_norm(nn.Linear(8, 8))
        self.d = nn.Linear(8, 8, bias=False)
        self.e = nn.Linear(8, 8, bias=False)
        self.e.weight = self.d.weight  # tied

    def forward(self, x):
        f = torch.relu(self.b(torch.relu(self.a(x)))).mean((2, 3))
        return self.e(torch.relu(self.d(torch.relu(self.c(f)))))


def _seeded(cls):
    torch.manual_seed(0)
    return cls()


def heads():
    return _seeded(Heads)


def dataclass_out():
    return _seeded(DataclassOut)


def parametrized():
    m = _seeded(Parametrized)
    m.eval()
    return m
'''

RECIPE = """
weights: {bits: 8, mode: sym, granularity: per_channel}
activations: {bits: 8, mode: asym_u}
calibration: {method: minmax, num_samples: 64, batch_size: 16}
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("interfaces")
    (d / "models.py").write_text(MODELS)
    (d / "recipe.yaml").write_text(RECIPE)
    rng = np.random.default_rng(0)
    np.savez(d / "calib.npz", x=rng.standard_normal((64, 3, 8, 8)).astype(np.float32))
    np.savez(d / "eval.npz", x=rng.standard_normal((48, 3, 8, 8)).astype(np.float32), y=rng.integers(0, 5, 48))
    return {"dir": d, "models": d / "models.py", "recipe": d / "recipe.yaml", "calib": d / "calib.npz", "eval": d / "eval.npz"}


def _build(files: dict[str, Path], factory: str, out: Path, *extra: str) -> tuple[int, str]:
    args = ["build", "--model", f"{files['models']}:{factory}", "--recipe", str(files["recipe"]), "--calib-data", str(files["calib"]),
            "--eval-data", str(files["eval"]), "--target", "onnx", "--out", str(out), "--no-latency", *extra]
    r = CliRunner().invoke(main, args)
    return r.exit_code, r.output


def test_outputs_are_flattened_in_pytree_order_and_named_by_path() -> None:
    # torch's own pytree fixes the order torch.export returns outputs in: ours must match it.
    out = {"logits": torch.zeros(2, 5), "aux": [torch.ones(2, 3), None, (torch.full((2,), 2.0), 7)]}
    leaves = [x for x in torch.utils._pytree.tree_leaves(out) if isinstance(x, torch.Tensor)]
    assert [t.tolist() for t in flatten(out)] == [t.tolist() for t in leaves]
    assert output_names(out) == ("logits", "aux.0", "aux.2.0")
    assert output_names(torch.zeros(1)) == ("output",)


def test_every_output_of_a_dict_model_is_verified_named_and_gated(files: dict[str, Path], tmp_path: Path) -> None:
    code, text = _build(files, "heads", tmp_path / "OUT")
    assert code == 0, text
    report = json.loads((tmp_path / "OUT" / "report.json").read_text())
    t = report["targets"]["onnx"]
    assert [o["name"] for o in t["outputs"]] == ["logits", "aux.0", "aux.1"]
    for o in t["outputs"]:
        assert o["vs_simulation"]["max_lsb_error"] <= t["tolerance_lsb"] + 1e-3, o
        assert o["vs_float"]["samples"] == 48
    # the aux maps are (N, 8, 8, 8): agreement is per position along the channel axis, never above 1
    assert 0.0 <= t["outputs"][1]["vs_float"]["top1_agreement"] <= 1.0
    checks = report["gates"]["checks"]
    # every output is judged per layer: the quantized ones as compared tensors, the float one (aux.1 = 2 f - 1,
    # computed after the last quantized tensor) as its own row, fed the runtime's f
    lp = t["layer_parity"]
    assert lp["outputs_covered"], lp
    float_rows = [r for r in lp["layers"] if r["node"].startswith("output_")]
    assert [r["tensor"] for r in float_rows] == ["aux.1"] and float_rows[0]["status"] == "ok", float_rows
    assert any(c["metric"] == "layer_parity_lsb" and c["passed"] for c in checks), checks
    golden = tmp_path / "OUT" / "onnx" / "golden"
    assert {p.name for p in golden.glob("output_*.npy")} == {"output_logits.npy", "output_aux.0.npy", "output_aux.1.npy"}
    assert "`aux.1`" in (tmp_path / "OUT" / "report.md").read_text()


def test_a_gate_on_a_secondary_output_fails_the_build_naming_it(files: dict[str, Path], tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    # aux.1 = 2 f - 1 repeats aux.0's rounding error twice over a smaller signal: its SQNR is the lowest
    recipe.write_text(RECIPE + "gates: {min_sqnr_db: 1000}\n")
    args = ["build", "--model", f"{files['models']}:heads", "--recipe", str(recipe), "--calib-data", str(files["calib"]),
            "--eval-data", str(files["eval"]), "--target", "onnx", "--out", str(tmp_path / "OUT"), "--no-latency"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 3, r.output
    report = json.loads((tmp_path / "OUT" / "report.json").read_text())
    failed = [f for f in report["gates"]["failures"] if "SQNR" in f]
    assert any("output 'aux.1'" in f for f in failed) and any("output 'logits'" in f for f in failed), failed


def test_a_dataclass_output_builds_without_registering_it_globally(files: dict[str, Path], tmp_path: Path) -> None:
    code, text = _build(files, "dataclass_out", tmp_path / "OUT")
    assert code == 0, text
    t = json.loads((tmp_path / "OUT" / "report.json").read_text())["targets"]["onnx"]
    assert [o["name"] for o in t["outputs"]] == ["logits", "features"]
    import importlib.util

    spec = importlib.util.spec_from_file_location("_iface_models", files["models"])
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    assert mod.Out not in torch.utils._pytree.SUPPORTED_NODES


def test_parametrized_and_tied_weights_quantize_as_constants_and_leave_the_model_alone(files: dict[str, Path], tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("_iface_models2", files["models"])
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    model = mod.parametrized()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 8, 8)
    ref = model(x)
    captured = capture(model, (x,))
    torch.testing.assert_close(captured.graph(x), ref, rtol=1e-5, atol=1e-5)
    assert is_parametrized(model), "the caller's parametrizations must stay"
    assert model.e.weight is model.d.weight
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)

    code, text = _build(files, "parametrized", tmp_path / "OUT")
    assert code == 0, text
    manifest = json.loads((tmp_path / "OUT" / "onnx" / "manifest.json").read_text())
    weights = {q["module"] for q in manifest["quantization"] if q["role"] == "weight"}
    assert {"a", "b", "c", "d"} <= weights, weights  # e's weight is d's: one tensor, quantized once
    import onnx

    graph = onnx.load(str(tmp_path / "OUT" / "onnx" / "model.onnx")).graph
    producer = {o: n for n in graph.node for o in n.output}

    def from_dequantize(name: str) -> bool:
        n = producer.get(name)
        while n is not None and n.op_type in ("Transpose", "Reshape", "Identity"):
            n = producer.get(n.input[0])
        return n is not None and n.op_type == "DequantizeLinear"

    compute = [n for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    assert len(compute) == 5 and all(from_dequantize(n.input[1]) for n in compute), [n.op_type for n in compute]


def test_a_transformers_model_output_is_verified_as_it_is(files: dict[str, Path], tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    code = '''
import torch, transformers

def build():
    torch.manual_seed(0)
    cfg = transformers.ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=5,
                                    downsample_in_first_stage=False)
    return transformers.ResNetForImageClassification(cfg).eval()
'''
    (tmp_path / "hf.py").write_text(code)
    args = ["build", "--model", f"{tmp_path / 'hf.py'}:build", "--recipe", str(files["recipe"]), "--calib-data", str(files["calib"]),
            "--eval-data", str(files["eval"]), "--target", "onnx", "--out", str(tmp_path / "OUT"), "--no-latency"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    t = json.loads((tmp_path / "OUT" / "report.json").read_text())["targets"]["onnx"]
    assert t["outputs"][0]["name"] == "logits"
    assert transformers.__version__


def test_agreement_counts_positions_along_the_class_axis() -> None:
    from qconvert.verify.metrics import CompareAccumulator

    ref = np.zeros((2, 3, 2, 2))
    ref[:, 1] = 1.0  # class 1 everywhere
    cand = ref.copy()
    cand[0, 2, 0, 0] = 5.0  # one of 8 positions now says class 2
    acc = CompareAccumulator()
    acc.update(ref, cand)
    assert acc.result().top1_agreement == pytest.approx(7 / 8)
    tokens = CompareAccumulator()
    tokens.update(np.eye(4)[None].repeat(3, 0), np.eye(4)[None].repeat(3, 0))  # (3, 4 tokens, 4 classes)
    assert tokens.result().top1_agreement == 1.0


@dataclasses.dataclass
class _Pair:
    a: torch.Tensor
    b: torch.Tensor


def test_capture_returns_the_flat_tuple_for_a_structured_model() -> None:
    class M(nn.Module):
        def forward(self, x: torch.Tensor) -> _Pair:
            return _Pair(x + 1, x * 2)

    captured = capture(M().eval(), (torch.randn(2, 3),))
    assert captured.output_names == ("a", "b")
    out = captured.graph(torch.ones(4, 3))
    assert isinstance(out, tuple) and [o.shape for o in out] == [(4, 3), (4, 3)]
    assert torch.equal(out[1], torch.full((4, 3), 2.0))
