"""The Python API: a model defined here, a DataLoader, the same figures as the CLI's report.json."""

from __future__ import annotations

import copy
import json
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import qconvert
from qconvert.cli import main
from qconvert.errors import DataError, GateFailedError, RecipeError
from qconvert.io.batches import Batches, StreamedDataset

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "samples" / "digits"


class TinyNet(nn.Module):
    """conv-bn-relu, depthwise-separable stride 2, pool, linear: small enough to train here in seconds."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(8, 16, 1), nn.ReLU())
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.pw(self.dw(self.stem(x))), 4), 1))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TinyNet, Path]:
    sys.path.insert(0, str(DIGITS))
    try:
        from train import digits_split, fit  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(DIGITS))
    torch.manual_seed(0)
    x, y, train_idx, _ = digits_split()
    model = TinyNet()
    fit(model, torch.optim.AdamW(model.parameters(), lr=3e-3), x[train_idx], y[train_idx], epochs=12)
    weights = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    torch.save(model.state_dict(), weights)
    return model, weights


def _loader(npz: Path, batch_size: int) -> DataLoader:
    z = np.load(npz)
    return DataLoader(TensorDataset(torch.from_numpy(z["x"]), torch.from_numpy(z["y"])), batch_size=batch_size)


def _api_and_cli(trained: tuple[TinyNet, Path], tmp: Path, targets: list[str]) -> tuple[qconvert.BuildReport, dict]:
    model, weights = trained
    # Loader batches (50, 30) differ from the recipe's batch size (64): the figures must not depend on them.
    result = qconvert.build(model, DIGITS / "recipe.yaml", calib_data=_loader(DIGITS / "calib.npz", 50),
                            eval_data=_loader(DIGITS / "eval.npz", 30), targets=targets, out=tmp / "API", latency=False)
    cli = CliRunner().invoke(main, ["build", "--model", f"{__file__}:TinyNet", "--weights", str(weights),
                                    "--recipe", str(DIGITS / "recipe.yaml"),
                                    "--calib-data", str(DIGITS / "calib.npz"), "--eval-data", str(DIGITS / "eval.npz"),
                                    *(a for t in targets for a in ("--target", t)), "--out", str(tmp / "CLI"), "--no-latency"])
    assert cli.exit_code == 0, cli.output
    return result, json.loads((tmp / "CLI" / "report.json").read_text())


@pytest.fixture(scope="module")
def onnx_api_build(trained: tuple[TinyNet, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[qconvert.BuildReport, dict]:
    return _api_and_cli(trained, tmp_path_factory.mktemp("api"), ["onnx"])


def _check_equal(result: qconvert.BuildReport, cli: dict, targets: set[str]) -> None:
    assert isinstance(result, qconvert.BuildReport) and result.passed
    assert result.float_accuracy == cli["float"]["accuracy"] and result.float_accuracy > 90
    assert result.calibration_samples == cli["calibration"]["samples"] == 256
    assert result.eval_samples == cli["eval"]["samples"] == 500
    assert set(result.targets) == set(cli["targets"]) == targets
    for name, t in result.targets.items():
        c = cli["targets"][name]
        assert t.executed and c["executed"]
        assert t.artifact.is_file() and t.artifact == result.out / c["artifact"]
        assert t.accuracy == c["accuracy"] and t.simulation_accuracy == c["simulation_accuracy"]
        assert t.vs_simulation is not None and t.vs_float is not None
        assert t.vs_simulation.model_dump(mode="json") == c["vs_simulation"]
        assert t.vs_float.model_dump(mode="json") == c["vs_float"]
        assert [o.model_dump(mode="json") for o in t.outputs] == c["outputs"] and len(t.outputs) == 1
        # (size_bytes may differ: exporters record the Python stack of each op, and the call paths differ)
        assert t.tolerance_lsb == c["tolerance_lsb"] and t.runtime == c["runtime"]
    assert result.gates.passed == cli["gates"]["passed"]
    assert [c.model_dump(mode="json") for c in result.gates.checks] == cli["gates"]["checks"]
    # the result is the report it wrote
    written = json.loads(result.report_json.read_text())
    assert all(written["targets"][n]["vs_float"] == cli["targets"][n]["vs_float"] for n in targets)


def test_build_from_module_and_dataloader_equals_cli_report(onnx_api_build: tuple[qconvert.BuildReport, dict]) -> None:
    _check_equal(*onnx_api_build, {"onnx"})


@pytest.mark.slow
def test_onnx_and_tflite_build_from_python_equals_cli_report(trained: tuple[TinyNet, Path], tmp_path: Path) -> None:
    _check_equal(*_api_and_cli(trained, tmp_path, ["onnx", "tflite"]), {"onnx", "tflite"})


def test_verify_from_python_runs_the_artifact(onnx_api_build: tuple[qconvert.BuildReport, dict]) -> None:
    verdict = qconvert.verify(onnx_api_build[0].targets["onnx"].directory)
    assert verdict.passed and verdict.target == "onnx" and verdict.samples == 8


def test_the_callers_model_is_not_touched(trained: tuple[TinyNet, Path], tmp_path: Path) -> None:
    model = copy.deepcopy(trained[0]).train()  # train mode: running the model itself would move BatchNorm's statistics
    model.stem[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    recipe = {**_recipe(), "equalization": True, "bias_correction": True}  # both rewrite weights of the captured graph
    data = dict(np.load(DIGITS / "calib.npz"))  # {"x": ..., "y": ...}, as a .npz holds them
    result = qconvert.build(model, recipe, calib_data=data, targets=["onnx"], out=tmp_path / "OUT", latency=False)
    assert result.targets["onnx"].executed
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
    assert not model._forward_hooks and not model._forward_pre_hooks and all(not m._forward_hooks for m in model.modules())


def _recipe() -> dict:
    import yaml

    return yaml.safe_load((DIGITS / "recipe.yaml").read_text())


def test_exported_program_numpy_data_and_a_failed_gate_in_the_result(trained: tuple[TinyNet, Path], tmp_path: Path) -> None:
    model = trained[0]
    x = torch.from_numpy(np.load(DIGITS / "calib.npz")["x"][:4])
    ep = torch.export.export(copy.deepcopy(model).eval(), (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    recipe = {**_recipe(), "gates": {"min_sqnr_db": 200}}  # no int8 model reaches this
    data = dict(np.load(DIGITS / "eval.npz"))
    result = qconvert.build(ep, recipe, calib_data=dict(np.load(DIGITS / "calib.npz")), eval_data=data, targets="onnx",
                            out=tmp_path / "OUT", latency=False)
    assert not result.passed and result.gates.failures and "SQNR" in result.gates.failures[0]
    assert (tmp_path / "OUT" / "report.json").is_file() and result.targets["onnx"].accuracy is not None
    with pytest.raises(GateFailedError):
        qconvert.build(ep, recipe, calib_data=data, targets=["onnx"], out=tmp_path / "OUT2", latency=False, raise_on_gate_failure=True)
    assert (tmp_path / "OUT2" / "report.json").is_file()


def test_a_recipe_dict_is_validated_like_a_file(trained: tuple[TinyNet, Path], tmp_path: Path) -> None:
    bad = {**_recipe(), "calibration": {"method": "minmax", "batch_size": 0}}
    with pytest.raises(RecipeError, match=r"calibration\.batch_size"):
        qconvert.build(trained[0], bad, calib_data=np.zeros((4, 1, 16, 16), np.float32), targets=["onnx"], out=tmp_path / "OUT")
    with pytest.raises(RecipeError, match=r"weigths: unknown key"):
        qconvert.build(trained[0], {"weigths": {}}, calib_data=np.zeros((4, 1, 16, 16), np.float32), targets=["onnx"], out=tmp_path / "OUT")
    assert not (tmp_path / "OUT").exists()


def test_transform_fn_labels_fn_and_calibrate(trained: tuple[TinyNet, Path], tmp_path: Path) -> None:
    z = np.load(DIGITS / "calib.npz")
    batches = [{"image": torch.from_numpy(z["x"][i : i + 16]), "label": torch.from_numpy(z["y"][i : i + 16])} for i in range(0, 256, 16)]
    cal = qconvert.calibrate(trained[0], DIGITS / "recipe.yaml", batches, transform_fn=lambda b: b["image"], out=tmp_path / "stats")
    assert cal.samples == 256 and cal.tensors > 5 and (tmp_path / "stats").is_dir()
    ds = StreamedDataset(Batches(batches, lambda b: b["image"], lambda b: b["label"]), ("x",))
    assert ds.size == 256 and ds.labels is not None
    sizes = [len(b.inputs[0]) for b in ds.batches(64, limit=200)]
    assert sizes == [64, 64, 64, 8]
    assert np.array_equal(np.concatenate([b.labels for b in ds.batches(64)]), z["y"])  # type: ignore[misc]


def test_streaming_holds_one_source_batch_at_a_time() -> None:
    alive: set[int] = set()
    peak = 0

    class Source:
        """10,000 batches made on demand: never materialized."""

        def __iter__(self):  # type: ignore[no-untyped-def]
            nonlocal peak
            for i in range(10_000):
                a = np.full((7, 3), i, np.float32)
                alive.add(i)
                weakref.finalize(a, alive.discard, i)
                peak = max(peak, len(alive))
                yield a

    ds = StreamedDataset(Batches(Source()), ("x",))
    n = 0
    for b in ds.batches(64):
        n += len(b.inputs[0])
        del b
    assert n == 70_000
    assert peak <= 12  # at most one requested batch's worth of source batches (64 / 7 -> 10), never all 10,000


def test_one_shot_iterators_are_refused() -> None:
    with pytest.raises(DataError, match="read only once"):
        StreamedDataset(Batches(iter([np.zeros((2, 3))])), ("x",))
    with pytest.raises(DataError, match="read only once"):
        StreamedDataset(Batches(np.zeros((2, 3)) for _ in range(3)), ("x",))


def test_import_qconvert_imports_no_torch() -> None:
    import subprocess

    code = "import sys, qconvert; qconvert.Batches; qconvert.verify; assert callable(qconvert.verify); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_the_readme_python_section_runs(tmp_path: Path) -> None:
    import re
    import subprocess

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)  # type: ignore[union-attr]
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines[0].startswith("OUT/python/onnx/model.onnx") and "SQNR vs float" in lines[0]
    assert lines[1].startswith("gates: ") and lines[2] == "verify: True"


@pytest.mark.slow
def test_the_quickstart_sample_builds_and_verifies_onnx_and_tflite(tmp_path: Path) -> None:
    import subprocess

    r = subprocess.run([sys.executable, str(ROOT / "samples" / "python_api" / "quickstart.py"), str(tmp_path / "OUT")],
                       capture_output=True, text=True, timeout=900, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "gates: passed" in r.stdout
    out = tmp_path / "OUT"
    assert r.stdout.count(": PASS") == 2 and (out / "onnx" / "model.onnx").is_file() and (out / "tflite" / "model.tflite").is_file()


def test_sensitivity_from_python_with_a_dataloader(trained: tuple[TinyNet, Path]) -> None:
    ranking = qconvert.sensitivity(trained[0], DIGITS / "recipe.yaml", _loader(DIGITS / "eval.npz", 25), metric="accuracy", samples=100)
    assert ranking.samples == 100 and ranking.float_accuracy is not None
    assert {s.layer.name for s in ranking.by_loss()} >= {"fc"}


def test_a_dataloaders_size_is_its_samplers() -> None:
    x = torch.zeros(100, 3)
    every_other = DataLoader(TensorDataset(x), batch_size=16, sampler=list(range(0, 100, 2)))
    ds = StreamedDataset(Batches(every_other), ("x",))
    assert ds.size == 50 == sum(len(b.inputs[0]) for b in ds.batches(64))
    assert StreamedDataset(Batches(DataLoader(TensorDataset(x), batch_size=16, drop_last=True)), ("x",)).size == 96


def test_api_names_stay_callable_after_their_subpackages_are_imported() -> None:
    import qconvert.sensitivity.run  # importing a subpackage rebinds qconvert.<name> to it
    import qconvert.verify.ondevice

    assert callable(qconvert.sensitivity) and callable(qconvert.verify)


@pytest.mark.slow
def test_calibration_memory_does_not_grow_with_samples(trained: tuple[TinyNet, Path]) -> None:
    import tracemalloc

    class Source:
        """Random digits-shaped batches made on demand, 50 at a time."""

        def __init__(self, n: int) -> None:
            self.n = n

        def __iter__(self):  # type: ignore[no-untyped-def]
            rng = np.random.default_rng(0)
            for i in range(0, self.n, 50):
                yield torch.from_numpy(rng.random((min(50, self.n - i), 1, 16, 16), dtype=np.float32))

    def peak(n: int) -> int:
        recipe = {"calibration": {"method": "minmax", "num_samples": n, "batch_size": 64}}
        tracemalloc.start()
        try:
            assert qconvert.calibrate(trained[0], recipe, Source(n)).samples == n
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak(100)  # imports and caches
    small, large = peak(200), peak(2000)  # the samples alone: 0.2 MB and 2 MB
    assert large < small + 2**20 // 2, (small, large)
