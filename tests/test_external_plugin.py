"""A plugin written outside the repo, installed with pip, works without core changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from qconvert.testing import digits_build_args

PLUGIN = '''
"""A third-party target: the Q/DQ graph as a saved ExportedProgram, run by torch."""
from pathlib import Path

import numpy as np

from qconvert.targets import Artifact, Availability, Target


class Pt2Target(Target):
    name = "tinypt2"
    description = "out-of-tree test plugin"
    api_version = 1

    def available(self):
        return Availability(True)

    def runtime_version(self):
        import torch
        return f"torch {torch.__version__}"

    def emit(self, qmodel, out_dir, options):
        import torch
        batch = torch.export.Dim("batch", min=1, max=1024)
        ep = torch.export.export(qmodel.graph, qmodel.example_inputs, dynamic_shapes=({0: batch},))
        torch.export.save(ep, out_dir / "model.pt2")
        return Artifact(self.name, out_dir, "model.pt2", qmodel.input_names, ("output",))

    def run(self, artifact, inputs):
        import torch
        m = torch.export.load(str(artifact.path)).module()
        with torch.no_grad():
            out = m(*(torch.from_numpy(inputs[n]) for n in artifact.input_names))
        return [np.asarray(out)]
'''


def _install(tmp: Path) -> Path:
    src = tmp / "src"
    (src / "qconvert_tinypt2").mkdir(parents=True)
    (src / "qconvert_tinypt2" / "__init__.py").write_text(PLUGIN)
    (src / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "qconvert-tinypt2"
        version = "0.0.1"
        [project.entry-points."qconvert.targets"]
        tinypt2 = "qconvert_tinypt2:Pt2Target"
    """))
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(src)], check=True, capture_output=True)
    return site


def test_out_of_tree_plugin_is_listed_and_built(tmp_path: Path, digits: dict[str, Path]) -> None:
    site = _install(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(site)}
    listed = subprocess.run([sys.executable, "-m", "qconvert", "targets"], env=env, capture_output=True, text=True, check=True)
    assert "tinypt2" in listed.stdout and "qconvert-tinypt2 0.0.1" in listed.stdout
    out = tmp_path / "OUT"
    proc = subprocess.run([sys.executable, "-m", "qconvert", *digits_build_args(digits, out, "tinypt2")], check=False,
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    entry = report["targets"]["tinypt2"]
    assert entry["executed"] and entry["vs_simulation"]["max_abs_error"] == 0.0
    assert (out / "tinypt2" / "model.pt2").is_file()


def test_autoload_can_be_disabled(tmp_path: Path) -> None:
    env = {**os.environ, "QCONVERT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    listed = subprocess.run([sys.executable, "-m", "qconvert", "targets"], env=env, capture_output=True, text=True, check=True)
    assert listed.stdout.startswith("no targets installed")


def test_broken_plugin_is_reported_by_name(tmp_path: Path) -> None:
    from importlib.metadata import EntryPoint

    from qconvert.errors import PluginError
    from qconvert.targets.registry import TargetRegistry

    reg = TargetRegistry(autoload=False)
    reg._entry_points["broken"] = EntryPoint("broken", "qconvert_does_not_exist:X", "qconvert.targets")
    try:
        reg.get("broken")
    except PluginError as e:
        assert "target plugin 'broken'" in str(e) and "ModuleNotFoundError" in str(e)
    else:
        raise AssertionError("a broken plugin must raise PluginError")
