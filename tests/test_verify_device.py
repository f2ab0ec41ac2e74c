"""`qconvert verify` on a machine without torch: an interpreter whose site-packages hold only numpy,
onnxruntime and qconvert's light dependencies (with their own dependencies), and the qconvert and
qconvert_onnx sources. Nothing else of the development environment can be imported there."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from importlib.metadata import Distribution, distribution
from pathlib import Path

import numpy as np
import pytest
from packaging.markers import Marker

ROOT = Path(__file__).resolve().parents[1]
#: What a board needs for `qconvert verify` of an onnx artifact: numpy, the runtime, the CLI's and
#: the Target interface's pure-Python dependencies. Their requirements are added below.
DEVICE_PACKAGES = ("numpy", "onnxruntime", "click", "pydantic", "pyyaml")


def _closure(names: tuple[str, ...]) -> dict[str, Distribution]:
    """The distributions pip would install for ``names`` (runtime requirements, no extras)."""
    found: dict[str, Distribution] = {}
    todo = list(names)
    while todo:
        d = distribution(todo.pop())
        key = d.metadata["Name"].lower().replace("_", "-")
        if key in found:
            continue
        found[key] = d
        for req in d.requires or []:
            marker = req.split(";", 1)[1] if ";" in req else ""
            if marker and ("extra" in marker or not Marker(marker).evaluate()):
                continue
            todo.append(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0])
    return found


@pytest.fixture(scope="module")
def device_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv (no system site-packages) with links to only the device packages."""
    env = tmp_path_factory.mktemp("device") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    site = Path(subprocess.run([str(env / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    dists = _closure(DEVICE_PACKAGES)
    assert not {"torch", "torchao", "onnx", "onnxscript"} & dists.keys()
    dists["qconvert-onnx"] = distribution("qconvert-onnx")  # its entry point names the target
    dev_site = Path(sysconfig.get_paths()["purelib"])
    for d in dists.values():
        tops = {f.parts[0] for f in d.files or [] if f.parts[0] not in ("..", "__pycache__") and not f.parts[0].endswith(".pth")}
        for top in tops:
            src = dev_site / top
            if src.exists() and not (site / top).exists():
                (site / top).symlink_to(src)
    (site / "qconvert_sources.pth").write_text(f"{ROOT}\n{ROOT / 'plugins' / 'onnx'}\n")
    return env / "bin" / "python"


def _verify(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = ("import sys; from qconvert.cli import main\n"
            "try:\n    main(sys.argv[1:])\n"
            "finally:\n    assert 'torch' not in sys.modules")
    return subprocess.run([str(python), "-c", code, "verify", *args], capture_output=True, text=True, timeout=120, check=False)


def test_the_device_environment_has_no_torch(device_python: Path) -> None:
    proc = subprocess.run([str(device_python), "-c", "import torch"], capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "No module named 'torch'" in proc.stderr


def test_verify_passes_untouched_and_fails_perturbed_weights(device_python: Path, onnx_build: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    ok = _verify(device_python, str(onnx_build / "onnx"))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0].endswith(": PASS")
    assert "output 'output': max error 0.000 LSB (tolerance 1 LSB" in ok.stdout

    bad_dir = tmp_path / "onnx"
    shutil.copytree(onnx_build / "onnx", bad_dir)
    model = onnx.load(bad_dir / "model.onnx")
    weight = next(i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 4)
    w = numpy_helper.to_array(weight)
    perturbed = np.clip(w.astype(np.int16) + np.random.default_rng(0).integers(-20, 21, w.shape), -127, 127).astype(np.int8)
    weight.CopyFrom(numpy_helper.from_array(perturbed, weight.name))
    onnx.save(model, bad_dir / "model.onnx")

    bad = _verify(device_python, str(bad_dir))
    assert bad.returncode == 3, bad.stdout + bad.stderr
    assert bad.stdout.splitlines()[0].endswith(": FAIL")
    assert re.fullmatch(r"gate failed: onnx: output 'output': max error \d+\.\d{3} LSB \(tolerance 1 LSB.*", bad.stderr.strip())


def test_verify_with_user_data_and_bad_input(device_python: Path, onnx_build: Path, tmp_path: Path) -> None:
    g = onnx_build / "onnx" / "golden"
    np.savez(tmp_path / "mine.npz", x=np.load(g / "input_x.npy"), output_output=np.load(g / "output_output.npy"),
             y=np.zeros(len(np.load(g / "input_x.npy")), np.int64))
    ok = _verify(device_python, str(onnx_build / "onnx"), "--data", str(tmp_path / "mine.npz"))
    assert ok.returncode == 0, ok.stderr
    assert "accuracy" in ok.stdout
    missing = _verify(device_python, str(tmp_path))
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and "no manifest.json" in missing.stderr
