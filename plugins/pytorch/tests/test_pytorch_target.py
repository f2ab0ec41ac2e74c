"""The pytorch target: real int8 kernels in plain torch, checked against the simulation and float.

Parity is checked against the core's Q/DQ graph run in torch; the artifacts run in
the runtime a user gets from the README (inductor with freezing, or torch.jit.load
under a quantized engine), never in a stand-in.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from qconvert_pytorch import PyTorchOptions, PyTorchTarget
from qconvert_pytorch.details import PytorchDetails
from qconvert_pytorch.engine import cpp_compiler, quantized_engine
from qconvert_pytorch.export import resolve_lowering
from torch.ao.nn import quantized as nnq
from torch.ao.nn.quantized import dynamic as nnqd

from qconvert.cli import main
from qconvert.core.capture import Captured, capture
from qconvert.core.quantize import QuantizedModel, calibrate, quantize
from qconvert.core.stats import StatsSet
from qconvert.errors import RecipeError, TargetUnavailableError
from qconvert.io.inputs import input_names_for
from qconvert.io.model import load_model
from qconvert.recipe import load_recipe, recipe_from_text
from qconvert.testing import digits_build_args, digits_paths

ROOT = Path(__file__).resolve().parents[3]
DIGITS, TEXT = ROOT / "samples" / "digits", ROOT / "samples" / "text"
TARGET = PyTorchTarget()


@functools.lru_cache(maxsize=2)
def _calibrated(sample: Path) -> tuple[Captured, StatsSet, dict[str, np.ndarray]]:
    """Capture and calibration of a sample, shared by the tests (64 calibration samples suffice here)."""
    recipe = load_recipe(sample / "recipe.yaml")
    model = load_model(f"{sample / 'model.py'}:build", str(sample / "weights.pt"))
    calib = np.load(sample / "calib.npz")
    inputs = tuple(torch.from_numpy(calib[k][:64]) for k in input_names_for(model, sample / "calib.npz"))
    cap = capture(model, tuple(t[:2] for t in inputs))
    return cap, calibrate(cap, recipe, [inputs]), dict(np.load(sample / "eval.npz"))


def _qmodel(sample: Path, options: PyTorchOptions) -> tuple[QuantizedModel, dict[str, np.ndarray]]:
    cap, stats, evaluation = _calibrated(sample)
    recipe = load_recipe(sample / "recipe.yaml")
    return quantize(cap, recipe, stats, TARGET.constraints(options), TARGET.name, TARGET.placement(options)), evaluation


def _float_and_sim(qm: QuantizedModel, sample: Path, data: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    model = load_model(f"{sample / 'model.py'}:build", str(sample / "weights.pt"))
    inputs = [torch.from_numpy(data[n]) for n in qm.input_names]
    with torch.no_grad():
        return model(*inputs).numpy(), qm.graph(*inputs).numpy()


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return 100.0 * float(np.mean(logits.argmax(1) == labels))


@pytest.fixture(scope="module")
def digits_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CLI build of the digits sample with the default lowering (inductor, x86)."""
    if cpp_compiler() is None:
        pytest.skip("the inductor lowering needs a C++ compiler where it runs: install g++ (or set $CXX)")
    out = tmp_path_factory.mktemp("pt") / "OUT"
    result = CliRunner().invoke(main, digits_build_args(digits_paths(ROOT), out, "pytorch"))
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def text_artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    qm, data = _qmodel(TEXT, PyTorchOptions())
    out = tmp_path_factory.mktemp("text")
    return qm, data, TARGET.emit(qm, out, PyTorchOptions())


def test_digits_build_is_int8_within_one_step_and_half_a_point(digits_build: Path) -> None:
    report = json.loads((digits_build / "report.json").read_text())
    t = report["targets"]["pytorch"]
    assert t["executed"] and t["artifact"] == "pytorch/model.pt2" and t["tolerance_lsb"] == 1.0
    assert t["vs_simulation"]["max_lsb_error"] <= 1.0 + 1e-4
    assert report["float"]["accuracy"] - t["accuracy"] <= 0.5
    manifest = json.loads((digits_build / "pytorch" / "manifest.json").read_text())
    assert manifest["artifact"]["details"] == {"backend": "x86", "lowering": "inductor", "dynamic": False}


def test_report_has_latency_against_float_loaded_the_same_way(digits_build: Path, text_artifact: tuple) -> None:
    """.pt2: int8 and float graph both compiled with freezing at batch 1 and 16, every conv/linear packed for oneDNN
    int8. TorchScript (the dynamic text sample): torch.jit.load against the float graph in eager mode."""
    lat = json.loads((digits_build / "report.json").read_text())["targets"]["pytorch"]["latency"]
    assert lat["runtime"] == f"torch {torch.__version__}, 1 thread(s)"
    assert list(lat["by_batch"]) == ["1", "16"]
    assert all(b["int8_ms"] > 0 and b["float_ms"] > 0 for b in lat["by_batch"].values())
    assert lat["int8_nodes"] == 6 and lat["float_nodes"] == 0  # 5 convolutions + 1 linear
    qm, _, art = text_artifact
    threads = torch.get_num_threads()
    scripted = TARGET.latency(qm, art, PyTorchOptions(), (1, 16))
    assert torch.get_num_threads() == threads  # timed on one thread, then restored
    assert scripted is not None and scripted.batch_sizes == (1, 16)
    assert all(ms > 0 for ms in scripted.int8_ms + scripted.float_ms)
    assert scripted.int8_nodes == 9 and scripted.float_nodes == 0  # dynamic Linear: 2 layers x 4 + head


FRESH = '''
import json, sys
import numpy as np
import torch
import torch.ao.quantization.fx._decomposed  # registers the quantize/dequantize ops of the graph

program = torch.export.load(sys.argv[1]).module()
if sys.argv[5] == "compiled":
    torch._inductor.config.freezing = True
    program = torch.compile(program)
z = np.load(sys.argv[2])
text = torch.jit.load(sys.argv[3])
t = np.load(sys.argv[4])
with torch.no_grad():
    logits = program(torch.from_numpy(z["x"]))
    text_logits = text(torch.from_numpy(t["input_ids"]), torch.from_numpy(t["attention_mask"]))
print(json.dumps({"accuracy": float((logits.argmax(1).numpy() == z["y"]).mean() * 100),
                  "text_accuracy": float((text_logits.argmax(1).numpy() == t["y"]).mean() * 100),
                  "qconvert": [m for m in sys.modules if m.startswith("qconvert")]}))
'''


@pytest.mark.parametrize("mode", ["eager", pytest.param("compiled", marks=pytest.mark.slow)])
def test_a_fresh_python_with_only_torch_runs_both_artifacts(digits_build: Path, text_artifact: tuple, tmp_path: Path,
                                                            mode: str) -> None:
    """The README's loading recipe in a new interpreter that never imports qconvert (compiled: the
    int8 path, also what the build's verification ran; eager: the same graph unlowered)."""
    qm, data, art = text_artifact
    script = tmp_path / "fresh.py"
    script.write_text(FRESH)
    proc = subprocess.run([sys.executable, str(script), str(digits_build / "pytorch" / "model.pt2"), str(DIGITS / "eval.npz"),
                           str(art.path), str(TEXT / "eval.npz"), mode], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["qconvert"] == []
    report = json.loads((digits_build / "report.json").read_text())
    assert report["float"]["accuracy"] - got["accuracy"] <= 0.5
    float_logits, _ = _float_and_sim(qm, TEXT, data)
    assert abs(_accuracy(float_logits, data["y"]) - got["text_accuracy"]) <= 1.0


def test_inductor_lowers_every_conv_and_linear_to_onednn_int8(digits_build: Path) -> None:
    """Inductor's freezing passes (those torch.compile runs on the artifact, applied here by
    torchao's helper without compiling C++) leave no float conv or linear."""
    import torch.ao.quantization.fx._decomposed  # registers the graph's quantize/dequantize ops
    from torchao.quantization.pt2e.lowering import lower_pt2e_quantized_to_x86

    module = torch.export.load(str(digits_build / "pytorch" / "model.pt2")).module()
    x = torch.from_numpy(np.load(DIGITS / "eval.npz")["x"][:4])
    with torch.no_grad():
        graph = lower_pt2e_quantized_to_x86(module, (x,))
        out, sim = graph(x), module(x)
    assert (out - sim).abs().max() <= 1.0001 * json.loads((digits_build / "report.json").read_text())["targets"]["pytorch"]["output_scale"]
    ops = Counter(str(n.target).split(".")[1] for n in graph.graph.nodes if str(n.target).startswith("onednn."))
    assert sum(v for k, v in ops.items() if k.startswith("qconv")) == 5 and ops["qlinear_pointwise"] == 1
    assert not any(n.target in (torch.ops.aten.conv2d.default, torch.ops.aten.convolution.default, torch.ops.aten.linear.default)
                   for n in graph.graph.nodes)


@pytest.mark.parametrize("backend,tolerance", [("qnnpack", 2.0), ("x86", 1.0)])
def test_quantized_modules_digits(backend: str, tolerance: float, tmp_path: Path) -> None:
    options = PyTorchOptions(backend=backend, lowering="quantized_modules") if backend == "x86" else PyTorchOptions(backend=backend)
    qm, data = _qmodel(DIGITS, options)
    art = TARGET.emit(qm, tmp_path, options)
    assert art.main_file == "model.pt" and art.tolerance_lsb == tolerance
    (out,) = TARGET.run(art, {"x": data["x"]})
    ref, sim = _float_and_sim(qm, DIGITS, data)
    (scale,) = qm.output_scales()
    assert scale is not None and np.abs(out - sim).max() / scale <= tolerance + 1e-4
    assert _accuracy(ref, data["y"]) - _accuracy(out, data["y"]) <= 0.5
    assert np.allclose(np.round(out / scale), out / scale, atol=1e-3)  # an integer kernel wrote the output grid
    with quantized_engine(backend):
        types = [m._c._type().qualified_name() for _, m in torch.jit.load(str(art.path)).named_modules()]
    quantized = Counter(t.rsplit(".", 1)[1] for t in types if ".quantized." in t)
    assert quantized["Conv2d"] + quantized["ConvReLU2d"] == 5 and quantized["Linear"] == 1


def _lowered(qm: QuantizedModel, backend: str) -> torch.nn.Module:
    from qconvert_pytorch.lower import lower_to_quantized_modules

    with quantized_engine(backend):
        return lower_to_quantized_modules(qm.graph, qm.input_names)


def test_dynamic_text_sample_keeps_accuracy_within_a_point(text_artifact: tuple) -> None:
    qm, data, art = text_artifact
    assert art.details == PytorchDetails(backend="x86", lowering="quantized_modules", dynamic=True) and art.tolerance_lsb == 4.0
    (out,) = TARGET.run(art, {k: data[k] for k in qm.input_names})
    ref, sim = _float_and_sim(qm, TEXT, data)
    assert abs(_accuracy(ref, data["y"]) - _accuracy(out, data["y"])) <= 1.0
    (step,) = qm.parity_steps()
    assert step is not None and np.abs(out - sim).max() / step <= art.tolerance_lsb
    lowered = list(_lowered(qm, "x86").modules())
    # 2 layers x (in-projection, out-projection, 2 feed-forward) + head; the embedding is int8 too
    assert sum(isinstance(m, nnqd.Linear) for m in lowered) == 9 and sum(isinstance(m, nnq.Embedding) for m in lowered) == 1


LSTM_OR_GRU = '''
import torch
from torch import nn

class Tagger(nn.Module):
    """ids -> embedding -> 2-layer {kind} -> linear on the last step"""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.rnn, self.fc = nn.Embedding(40, 16), nn.{kind}(16, 24, 2, batch_first=True), nn.Linear(24, 5)

    def forward(self, ids):
        return self.fc(self.rnn(self.emb(ids))[0][:, -1])

def build():
    return Tagger()
'''


@pytest.mark.parametrize("kind,backend", [("LSTM", "x86"), ("GRU", "qnnpack")])
def test_dynamic_lstm_and_gru_run_as_torch_dynamic_modules(kind: str, backend: str, tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(LSTM_OR_GRU.replace("{kind}", kind))
    model = load_model(f"{tmp_path / 'm.py'}:build", None)
    ids = torch.randint(0, 40, (64, 7), generator=torch.Generator().manual_seed(1))
    cap = capture(model, (ids[:2],))
    recipe = recipe_from_text("dynamic: true\n")
    options = PyTorchOptions(backend=backend)
    qm = quantize(cap, recipe, calibrate(cap, recipe, [(ids,)]), TARGET.constraints(options), TARGET.name, TARGET.placement(options))
    assert not qm.warnings
    art = TARGET.emit(qm, tmp_path, options)
    (out,) = TARGET.run(art, {"ids": ids.numpy()})
    with torch.no_grad():
        sim, ref = qm.graph(ids).numpy(), model(ids).numpy()
    (step,) = qm.parity_steps()
    assert step is not None and art.tolerance_lsb is not None and np.abs(out - sim).max() / step <= art.tolerance_lsb
    assert np.abs(out - ref).max() / step <= 2 * art.tolerance_lsb and not np.array_equal(out, ref)
    lowered = list(_lowered(qm, backend).modules())
    assert sum(isinstance(m, (nnqd.LSTM, nnqd.GRU)) for m in lowered) == 1  # torch.ao's dynamic RNN, not nn.LSTM
    assert sum(isinstance(m, nnqd.Linear) for m in lowered) == 1


def test_inductor_with_qnnpack_is_a_one_line_recipe_error(tmp_path: Path) -> None:
    recipe = (DIGITS / "recipe.yaml").read_text() + "targets:\n  pytorch: {backend: qnnpack, lowering: inductor}\n"
    (tmp_path / "r.yaml").write_text(recipe)
    args = digits_build_args(digits_paths(ROOT), tmp_path / "OUT", "pytorch")
    args[args.index("--recipe") + 1] = str(tmp_path / "r.yaml")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0
    assert "r.yaml:" in result.output and "targets.pytorch.lowering: inductor lowers int8 to oneDNN (x86) only" in result.output
    assert not (tmp_path / "OUT").exists()


def test_inductor_for_a_dynamic_model_is_refused() -> None:
    qm, _ = _qmodel(TEXT, PyTorchOptions())
    with pytest.raises(RecipeError, match="dynamic quantization runs as torch.ao dynamic quantized modules"):
        resolve_lowering(PyTorchOptions(lowering="inductor"), qm)


def test_sub_8_bit_activations_avoid_inductor_and_saturate_like_the_simulation(tmp_path: Path) -> None:
    """oneDNN's fused kernels saturate to [0, 255]; a 4-bit activation must stop at 15."""
    cap, stats, data = _calibrated(DIGITS)
    options = PyTorchOptions()
    qm = quantize(cap, recipe_from_text("activations: {bits: 4, mode: asym_u}\n"), stats, TARGET.constraints(options),
                  TARGET.name, TARGET.placement(options))
    assert resolve_lowering(options, qm) == "quantized_modules"
    with pytest.raises(RecipeError, match="below 8 bits"):
        resolve_lowering(PyTorchOptions(lowering="inductor"), qm)
    (out,) = TARGET.run(TARGET.emit(qm, tmp_path, options), {"x": data["x"]})
    with torch.no_grad():
        sim = qm.graph(torch.from_numpy(data["x"])).numpy()
    (scale,) = qm.output_scales()
    assert scale is not None and np.abs(out - sim).max() / scale <= 1.0 + 1e-4


def test_without_a_cpp_compiler_auto_falls_back_to_quantized_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-c++"))
    qm, _ = _qmodel(DIGITS, PyTorchOptions())
    art = TARGET.emit(qm, tmp_path, PyTorchOptions())
    assert art.main_file == "model.pt" and PytorchDetails.of(art).lowering == "quantized_modules"
    assert any("no C++ compiler" in n for n in art.notes)
    with pytest.raises(TargetUnavailableError, match="needs a C\\+\\+ compiler"):
        TARGET.emit(qm, tmp_path / "x", PyTorchOptions(lowering="inductor"))


def test_warm_up_runs_inductors_vector_isa_probe_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe (a fresh process per instruction set) runs in the build's warm-up thread; without a compiler, none."""
    from torch._inductor.cpu_vec_isa import valid_vec_isa_list

    from qconvert import warm_up

    if cpp_compiler() is None:
        pytest.skip("no C++ compiler here (inductor cannot run): install g++")
    valid_vec_isa_list.cache_clear()
    warm_up.start([TARGET]).wait()
    assert valid_vec_isa_list.cache_info().currsize == 1  # a compile in this process (or a worker forked now) reuses it
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    assert TARGET.warm_up() is None
