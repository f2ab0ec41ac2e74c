"""The conformance kit itself: every in-repo plugin runs it, and it fails a plugin that drifts or loosens its tolerance."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qconvert.testing.conformance import PINNED

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file())


def _kit_target_names(test_file: Path) -> list[str]:
    """``target_name`` of each class in ``test_file`` that subclasses ``Conformance``."""
    names = []
    for node in ast.walk(ast.parse(test_file.read_text())):
        if isinstance(node, ast.ClassDef) and any(isinstance(b, ast.Name) and b.id == "Conformance" for b in node.bases):
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
                    names += [stmt.value.value for t in stmt.targets if isinstance(t, ast.Name) and t.id == "target_name"]
    return names


def test_every_in_repo_plugin_runs_the_kit_with_a_pinned_tolerance() -> None:
    assert PLUGINS == sorted(PINNED)
    for name in PLUGINS:
        test_file = ROOT / "plugins" / name / "tests" / f"test_{name}_conformance.py"
        assert test_file.is_file(), f"{name}: no {test_file.relative_to(ROOT)}"
        assert _kit_target_names(test_file) == [name]


BROKEN = textwrap.dedent('''
    """The onnx target with two defects the kit must catch."""
    import numpy as np
    import pytest
    from qconvert_onnx import OnnxTarget

    from qconvert.testing.conformance import Conformance


    class Drifting(OnnxTarget):
        parity_tolerance_lsb = 4.0  # looser than the kit pins for onnx

        def run(self, artifact, inputs):
            return [o + np.float32(0.5) for o in super().run(artifact, inputs)]  # far beyond a step


    class TestBroken(Conformance):
        target_name = "onnx"

        @pytest.fixture(scope="class")
        def target(self):
            return Drifting()
''')


@pytest.mark.slow  # ~30 s on 2 busy cores: a fresh interpreter imports torch and emits one model
def test_the_kit_fails_a_target_that_drifts_from_the_simulation_or_loosens_its_tolerance(tmp_path: Path) -> None:
    (tmp_path / "test_broken.py").write_text(BROKEN)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k",
                           "declared or pinned_tolerance_of_the_simulation and residual",
                           str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    failed = sorted(line.split("::")[-1].split(" ")[0] for line in proc.stdout.splitlines() if line.startswith("FAILED"))
    assert failed == ["test_declared_tolerance_is_not_looser_than_pinned",
                      "test_runs_within_pinned_tolerance_of_the_simulation[conv_bn_relu_residual]"], proc.stdout[-3000:]
