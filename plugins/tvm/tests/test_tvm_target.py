"""The tvm target on the digits sample: the exported library loaded by TVM in fresh processes.

The shared build (conftest ``edge_build``) is one `qconvert build --target tflite --target tvm`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import textwrap
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import torch

from qconvert.core.quantize import QuantizedModel
from qconvert.errors import RecipeError
from qconvert.io.model import load_model

ROOT = Path(__file__).resolve().parents[3]
DIGITS = ROOT / "samples" / "digits"
AARCH64 = 183  # ELF e_machine of AArch64

LOADER = textwrap.dedent('''
    """What a host with only TVM does with OUT/tvm: load the library, run main in the Relax VM; no torch, no qconvert."""
    import sys
    sys.modules["torch"] = None
    import numpy as np
    import tvm
    from tvm import relax
    vm = relax.VirtualMachine(tvm.runtime.load_module(sys.argv[1]), tvm.cpu())
    x = np.load(sys.argv[2])["x"]
    np.save(sys.argv[3], vm["main"](tvm.runtime.tensor(x)).numpy())
''')


def _load_in_fresh_process(library: Path, tmp_path: Path) -> np.ndarray:
    script, out = tmp_path / "loader.py", tmp_path / "out.npy"
    script.write_text(LOADER)
    subprocess.run([sys.executable, "-P", str(script), str(library), str(DIGITS / "eval.npz"), str(out)], check=True,
                   capture_output=True, timeout=300)
    return np.load(out)


def _elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF"
    return int.from_bytes(data[18:20], "little")


def test_library_loads_in_a_fresh_process_within_half_a_point_of_float(tvm_build: Path, tmp_path: Path) -> None:
    out = _load_in_fresh_process(tvm_build / "tvm" / "model.so", tmp_path)
    z = np.load(DIGITS / "eval.npz")
    int8_acc = 100.0 * float(np.mean(out.argmax(1) == z["y"]))
    model = load_model(f"{DIGITS / 'model.py'}:build", str(DIGITS / "weights.pt"))
    with torch.no_grad():
        float_acc = 100.0 * float(np.mean(model(torch.from_numpy(z["x"])).argmax(1).numpy() == z["y"]))
    assert float_acc - int8_acc <= 0.5
    report = json.loads((tvm_build / "report.json").read_text())
    assert report["targets"]["tvm"]["executed"] is True
    assert report["targets"]["tvm"]["accuracy"] == pytest.approx(int8_acc)


def test_relax_vm_within_one_output_step_of_simulation_on_every_sample(tvm_build: Path, tvm_qmodel: QuantizedModel) -> None:
    from qconvert_tvm.runtime import run_tvm

    x = np.load(DIGITS / "eval.npz")["x"]
    (out,) = run_tvm(tvm_build / "tvm" / "model.so", [x])
    with torch.no_grad():
        sim = tvm_qmodel.graph(torch.from_numpy(x)).numpy()
    (scale,) = tvm_qmodel.output_scales()
    assert scale is not None
    steps = np.abs(out - sim) / scale
    assert steps.max() <= 1.0 + 1e-4
    assert np.allclose(np.round(out / scale), out / scale, atol=1e-3)  # the QDQ output grid: quantized for real


def test_report_has_latency_against_the_float_model_built_the_same_way(tvm_build: Path) -> None:
    """Both libraries in the Relax VM at batch 1 and 16 (the library has a dynamic batch). The Relax ONNX
    frontend computes between QuantizeLinear and DequantizeLinear in float32: no compute node is int8."""
    lat = json.loads((tvm_build / "report.json").read_text())["targets"]["tvm"]["latency"]
    assert lat["runtime"] == f"tvm {version('apache-tvm')}"
    assert list(lat["by_batch"]) == ["1", "16"]
    assert all(b["int8_ms"] > 0 and b["float_ms"] > 0 for b in lat["by_batch"].values())
    # 5 convolutions, the residual add, the mean and the matmul of the fully connected layer.
    assert lat["int8_nodes"] == 0 and lat["float_nodes"] == 8 and lat["float_ops"] == ["add", "conv2d", "matmul", "mean"]


def test_manifest_records_tvm_version_target_and_golden_files(tvm_build: Path, tmp_path: Path) -> None:
    d = tvm_build / "tvm"
    m = json.loads((d / "manifest.json").read_text())
    assert m["runtime"] == f"tvm {version('apache-tvm')}"
    extra = m["artifact"]["details"]
    assert extra["tvm_version"] == version("apache-tvm") and extra["target"] == "llvm" and extra["entry"] == "main"
    assert '"kind":"llvm"' in extra["tvm_target"].replace(" ", "")
    assert (d / "model.onnx").is_file() and (d / "model.so").is_file()
    golden_in, golden_out = np.load(d / "golden" / "input_x.npy"), np.load(d / "golden" / "output_output.npy")
    out = _load_in_fresh_process(d / "model.so", tmp_path)
    x = np.load(DIGITS / "eval.npz")["x"]
    np.testing.assert_array_equal(golden_in, x[: len(golden_in)])
    np.testing.assert_array_equal(golden_out, out[: len(golden_out)])


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None,
                    reason="no AArch64 cross toolchain: apt-get install g++-aarch64-linux-gnu")
def test_arm_target_cross_compiles_an_aarch64_library(tvm_qmodel: QuantizedModel, tmp_path: Path) -> None:
    from qconvert_tvm import TvmTarget

    target = TvmTarget()
    art = target.emit(tvm_qmodel, tmp_path, target.parse_options({"target": "llvm -mtriple=aarch64-linux-gnu -mattr=+neon"}))
    assert not art.runnable and "cross-compiled for aarch64" in art.notes[0]
    assert _elf_machine(art.path.read_bytes()[:20]) == AARCH64


def test_arm_target_without_toolchain_writes_relax_module_and_objects(tvm_qmodel: QuantizedModel, tmp_path: Path) -> None:
    import tvm
    from qconvert_tvm import TvmTarget

    target = TvmTarget()
    options = target.parse_options({"target": "llvm -mtriple=aarch64-linux-gnu -mattr=+neon", "cross_compiler": "no-such-aarch64-g++"})
    art = target.emit(tvm_qmodel, tmp_path, options)
    assert not art.runnable and "no cross toolchain for aarch64" in art.notes[0]
    with tarfile.open(art.path) as tar:
        objects = [m for m in tar.getmembers() if m.name.endswith(".o")]
        assert objects and all(_elf_machine(tar.extractfile(m).read(20)) == AARCH64 for m in objects)  # type: ignore[union-attr]  # regular members
    relax_module = tvm.ir.load_json((tmp_path / "model.relax.json").read_text())
    assert "main" in [gv.name_hint for gv in relax_module.get_global_vars()]
    assert target.latency(tvm_qmodel, art, options, (1, 16)) is None  # nothing runs here to time


def test_target_strings_are_parsed_and_checked() -> None:
    from qconvert_tvm import TvmTarget
    from qconvert_tvm.target_spec import parse_target

    spec = parse_target("llvm -mtriple=aarch64-linux-gnu -mattr=+neon,+dotprod")
    assert spec.as_tvm() == {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"]}
    assert spec.arch == "aarch64" and parse_target("llvm").is_host
    with pytest.raises(RecipeError, match=r"r.yaml: targets.tvm.target: .*only CPU targets of kind 'llvm'"):
        TvmTarget().parse_options({"target": "cuda -arch=sm_80"}, "r.yaml")
    with pytest.raises(RecipeError, match=r"expected -key=value, got 'mcpu'"):
        TvmTarget().parse_options({"target": "llvm mcpu"})
