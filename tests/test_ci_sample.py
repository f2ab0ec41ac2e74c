"""samples/ci/github-actions.yml works when copied into a model's repository.

The workflow is run as GitHub would run its `run:` steps (bash, the workflow's env), in a
scratch model repository outside this one, holding a model that is not in this repo, laid
out as the workflow's defaults say. Nothing of qconvert's checkout may be needed: no
`make setup`, no editable or path installs. The slow test installs qconvert and the onnx
plugin from wheels into a fresh virtual environment with the workflow's own install step.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from qconvert.io.model import load_model

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "samples" / "ci" / "github-actions.yml"

MODEL = '''
import torch
from torch import nn


def build():
    # conv -> relu -> pool -> linear, 3x12x12 input, 4 classes: not a model of qconvert's repository
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 4))
'''


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _steps(job: str) -> list[dict]:
    return [s for s in _workflow()["jobs"][job]["steps"] if "run" in s]


def _model_repo(where: Path) -> Path:
    """A scratch model repository, laid out as the workflow's env says."""
    env = _workflow()["env"]
    where.mkdir(parents=True)
    (where / env["MODEL"].split(":")[0]).write_text(MODEL)
    torch.manual_seed(0)
    model = load_model(f"{where / env['MODEL'].split(':')[0]}:build")  # as qconvert loads it
    torch.save(model.state_dict(), where / env["WEIGHTS"])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 3, 12, 12)).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).argmax(1).numpy()  # labels the float model gets right: accuracy gates are meaningful
    for key, sl in (("CALIB", slice(0, 64)), ("EVAL", slice(64, 96))):
        (where / env[key]).parent.mkdir(parents=True, exist_ok=True)
        np.savez(where / env[key], x=x[sl], y=y[sl])
    (where / env["RECIPE"]).parent.mkdir(parents=True, exist_ok=True)
    (where / env["RECIPE"]).write_text("version: 1\ninput_shape: [1, 3, 12, 12]\ncalibration: {num_samples: 64}\n"
                                       "gates: {min_top1_agreement: 0.8}\n")
    return where


def _run_step(step: dict, cwd: Path, path_first: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}, **_workflow()["env"], **env,
            "PATH": f"{path_first}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-e", "-c", step["run"]], cwd=cwd, env=full, capture_output=True, text=True, check=False, timeout=1200)


def test_workflow_needs_nothing_of_qconvert_checkout() -> None:
    text = "\n".join(s["run"] for job in _workflow()["jobs"] for s in _steps(job))
    for forbidden in ("make setup", "pip install -e", "pip install .", "plugins/", "samples/", ".venv"):
        assert forbidden not in text, forbidden
    install = next(s for s in _steps("build-and-gate") if s["name"].startswith("install qconvert"))
    assert "$QCONVERT_PIP_ARGS" in install["run"] and "qconvert[build]" in install["run"]


def test_build_step_runs_in_a_scratch_model_repo(tmp_path: Path) -> None:
    repo = _model_repo(tmp_path / "model-repo")
    assert ROOT not in repo.parents
    build = next(s for s in _steps("build-and-gate") if s["name"].startswith("build and gate"))
    r = _run_step(build, repo, Path(sys.executable).parent)
    assert r.returncode == 0, r.stdout + r.stderr
    out = repo / _workflow()["env"]["OUT"]
    assert (out / "report.html").is_file() and (out / "onnx" / "model.onnx").is_file()
    # the CI log holds only qconvert's lines: what torch or onnxruntime said went to OUT/build.log (written when non-empty)
    assert r.stderr == "", r.stderr
    assert not (out / "build.log").exists() or (out / "build.log").read_text().strip()
    verify = next(s for s in _steps("verify-on-device") if s["name"].startswith("verify"))
    check = verify["run"].split("\n", 3)[-1]  # the verify loop, without the board install
    r = _run_step({"run": check}, repo, Path(sys.executable).parent)
    assert r.returncode == 0 and "PASS" in r.stdout, r.stdout + r.stderr


@pytest.mark.slow
def test_workflow_installs_qconvert_as_packages_into_a_fresh_venv(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    for project in (ROOT, ROOT / "plugins" / "onnx"):
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                            str(project)],
                           capture_output=True, text=True, check=False, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    bin_ = venv / "bin"
    r = subprocess.run([str(bin_ / "pip"), "install", "-q", "torch==2.13.0"], capture_output=True, text=True, check=False, timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]  # the workflow's torch step, from this machine's index
    repo = _model_repo(tmp_path / "model-repo")
    install = next(s for s in _steps("build-and-gate") if s["name"].startswith("install qconvert"))
    r = _run_step(install, repo, bin_, QCONVERT_PIP_ARGS=f"--find-links {wheels}")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    where = subprocess.run([str(bin_ / "python"), "-c", "import qconvert, qconvert_onnx; print(qconvert.__file__, qconvert_onnx.__file__)"],
                           capture_output=True, text=True, check=True)
    assert all(f.startswith(str(venv)) for f in where.stdout.split()), where.stdout
    build = next(s for s in _steps("build-and-gate") if s["name"].startswith("build and gate"))
    r = _run_step(build, repo, bin_)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert (repo / _workflow()["env"]["OUT"] / "report.json").is_file()

