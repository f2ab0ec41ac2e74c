"""Packages: metadata ranges and extras, wheels built with `python -m build` and installed into fresh
virtual environments (not editable, not this source tree), and the torch-free board install.

The venv tests install from PyPI (through pip's cache) and take minutes: they are slow (make test-all).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))
DIGITS = ROOT / "samples" / "digits"
#: What building needs and a board must not get.
EXPORTERS = {"torch", "torchao", "onnx", "onnxscript", "onnxsim", "litert-torch"}


def _project(path: Path) -> dict:
    return tomllib.loads((path / "pyproject.toml").read_text())["project"]


def _names(reqs: list[str]) -> set[str]:
    import re

    return {re.split(r"[ ;<>=!~\[(]", r, maxsplit=1)[0].lower() for r in reqs}


def test_metadata_declares_ranges_and_extras_and_pins_live_in_constraints() -> None:
    core = _project(ROOT)
    assert not _names(core["dependencies"]) & EXPORTERS, "the core's own dependencies must install on a board"
    torch_req = next(r for r in core["optional-dependencies"]["build"] if r.startswith("torch"))
    assert ">=" in torch_req and "==" not in torch_req
    for p in PLUGINS:
        name = p.name
        assert f"qconvert-{name}[build]" in core["optional-dependencies"][name]
        default = _names(_project(p)["dependencies"]) - ({"torch"} if name == "pytorch" else set())
        assert not default & EXPORTERS, f"qconvert-{name}'s default install must be the board's: {default & EXPORTERS}"
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins = dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))
    assert pins["torch"] == "2.13.0"
    setup = (ROOT / "Makefile").read_text()
    assert setup.index("pip install --quiet torch==2.13.0") < setup.index("-c constraints.txt")


def _run(cmd: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, env=env)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build --wheel` of the core and every plugin."""
    pytest.importorskip("build")
    dist = tmp_path_factory.mktemp("dist")
    for project in (ROOT, *PLUGINS):
        r = _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(project)], ROOT)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    built = sorted(p.name for p in dist.glob("*.whl"))
    print("built:", " ".join(built))
    assert len(built) == 1 + len(PLUGINS)
    return dist


def _venv(where: Path) -> Path:
    r = _run([sys.executable, "-m", "venv", str(where)], where.parent)
    assert r.returncode == 0, r.stderr
    return where / "bin"


def _pip(bin_: Path, *args: str) -> subprocess.CompletedProcess[str]:
    r = _run([str(bin_ / "pip"), "install", "--quiet", "--disable-pip-version-check", *args], bin_.parent)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def _installed(bin_: Path) -> dict[str, str]:
    r = _run([str(bin_ / "pip"), "list", "--format", "json", "--disable-pip-version-check"], bin_.parent)
    return {d["name"].lower(): d["version"] for d in json.loads(r.stdout)}


@pytest.mark.slow
def test_wheels_install_into_a_fresh_venv_and_build_digits_for_onnx(wheels: Path, tmp_path: Path) -> None:
    bin_ = _venv(tmp_path / "venv")
    _pip(bin_, "torch==2.13.0")  # the local CPU build first, as make setup does: never a CUDA one
    _pip(bin_, "--find-links", str(wheels), "qconvert[onnx]")
    where = _run([str(bin_ / "python"), "-c", "import qconvert, qconvert_onnx; print(qconvert.__file__, qconvert_onnx.__file__)"], tmp_path)
    assert where.returncode == 0 and all(f.startswith(str(tmp_path / "venv")) for f in where.stdout.split()), where.stdout + where.stderr
    r = _run([str(bin_ / "qconvert"), "build", "--model", f"{DIGITS / 'model.py'}:build", "--weights", str(DIGITS / "weights.pt"),
              "--recipe", str(DIGITS / "recipe.yaml"), "--calib-data", str(DIGITS / "calib.npz"), "--eval-data", str(DIGITS / "eval.npz"),
              "--target", "onnx", "--out", str(tmp_path / "OUT"), "--no-latency"], tmp_path)
    print(r.stdout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((tmp_path / "OUT" / "report.json").read_text())
    assert report["targets"]["onnx"]["executed"] and report["gates"]["passed"] and report["targets"]["onnx"]["accuracy"] > 90


@pytest.mark.slow
def test_board_install_has_no_torch_and_verifies_onnx_and_tflite(wheels: Path, onnx_build: Path, edge_build: Path, tmp_path: Path) -> None:
    bin_ = _venv(tmp_path / "board")
    _pip(bin_, "--find-links", str(wheels), "qconvert-onnx", "qconvert-tflite")  # the one command a board runs
    installed = _installed(bin_)
    print("board packages:", " ".join(f"{k}=={v}" for k, v in sorted(installed.items())))
    assert not EXPORTERS & installed.keys()
    for artifact in (onnx_build / "onnx", edge_build / "tflite"):
        r = _run([str(bin_ / "qconvert"), "verify", str(artifact)], tmp_path)
        print(r.stdout)
        assert r.returncode == 0 and "PASS" in r.stdout, r.stdout + r.stderr
    r = _run([str(bin_ / "qconvert"), "build", "--model", "m.py:f", "--recipe", "r.yaml", "--target", "onnx", "--out", "OUT"], tmp_path)
    assert r.returncode == 4 and "pip install 'qconvert[build]'" in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.slow
def test_installing_the_wheel_keeps_another_supported_torch(wheels: Path, tmp_path: Path) -> None:
    """pip's resolver on our metadata, in a venv whose torch is 2.14.1 (recorded as installed; the real
    2.14.1 CUDA build is 5 GB: the README gives the one-off run with it)."""
    bin_ = _venv(tmp_path / "venv")
    site = next((tmp_path / "venv" / "lib").glob("python3*/site-packages"))
    info = site / "torch-2.14.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.14.1\n")
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text("")
    report = tmp_path / "report.json"
    _pip(bin_, "--dry-run", "--report", str(report), "--find-links", str(wheels), "qconvert[build]")
    install = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    print("pip would install:", " ".join(f"{k}=={v}" for k, v in sorted(install.items())))
    assert "qconvert" in install and "torch" not in install
