"""The registry validates each plugin at load and refuses a target name registered twice, naming both."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from qconvert.errors import PluginConflictError, PluginError
from qconvert.targets import API_VERSION
from qconvert.targets.registry import TargetRegistry

#: Targets that break one rule each; ``Good`` breaks none.
TARGETS = '''
from pydantic import ConfigDict

from qconvert.targets import Availability, Target, TargetOptions


class _Base(Target):
    def available(self):
        return Availability(True)

    def emit(self, qmodel, out_dir, options):
        raise NotImplementedError

    def run(self, artifact, inputs):
        raise NotImplementedError


class Good(_Base):
    name = "good"
    api_version = 1


class Renamed(_Base):
    name = "othername"
    api_version = 1


class Loose(TargetOptions):
    model_config = ConfigDict(extra="allow", frozen=True)


class LooseOptions(_Base):
    name = "loose"
    Options = Loose
    api_version = 1


class Unversioned(_Base):
    name = "unversioned"


class Future(_Base):
    name = "future"
    api_version = 99
'''


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TargetRegistry:
    (tmp_path / "qconvert_rules.py").write_text(TARGETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = TargetRegistry(autoload=False)
    for ep_name, attr in [("good", "Good"), ("renamed", "Renamed"), ("loose", "LooseOptions"), ("unversioned", "Unversioned"),
                          ("future", "Future")]:
        reg._entry_points[ep_name] = EntryPoint(ep_name, f"qconvert_rules:{attr}", "qconvert.targets")
    return reg


def test_a_plugin_that_keeps_the_rules_loads(plugins: TargetRegistry) -> None:
    assert plugins.get("good").name == "good"


@pytest.mark.parametrize("name, rule", [
    ("renamed", "its Target.name is 'othername', not the entry-point name 'renamed'"),
    ("loose", "its Options must refuse unknown keys"),
    ("unversioned", f"it declares no api_version, and this qconvert implements version {API_VERSION}"),
    ("future", f"it is written for plugin API version 99, and this qconvert implements version {API_VERSION}"),
])
def test_a_plugin_that_breaks_a_rule_is_refused_at_load_naming_it(plugins: TargetRegistry, name: str, rule: str) -> None:
    with pytest.raises(PluginError, match=f"target plugin '{name}' .*is broken") as e:
        plugins.get(name)
    assert rule in str(e.value) and "\n" not in str(e.value)


def test_a_name_registered_twice_in_process_is_refused(plugins: TargetRegistry) -> None:
    reg = TargetRegistry(autoload=False)
    reg.register(plugins.get("good"))
    with pytest.raises(PluginConflictError, match="target 'good' is registered twice"):
        reg.register(plugins.get("good"))


def test_every_installed_plugin_keeps_the_rules() -> None:
    reg = TargetRegistry()
    assert {"onnx", "tflite", "tvm", "pytorch", "tensorrt", "tidl"} <= set(reg.names())
    for name in reg.names():
        assert reg.get(name).name == name


def test_a_target_name_two_distributions_register_is_one_line_naming_both_exit_2(tmp_path: Path) -> None:
    """A second distribution registering 'onnx' (installed with pip, as a user would) makes every command refuse."""
    src = tmp_path / "src"
    (src / "qconvert_onnx_fork").mkdir(parents=True)
    (src / "qconvert_onnx_fork" / "__init__.py").write_text("from qconvert_onnx import OnnxTarget as Fork\n")
    (src / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "qconvert-onnx-fork"
        version = "0.0.1"
        [project.entry-points."qconvert.targets"]
        onnx = "qconvert_onnx_fork:Fork"
    """))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(site),
                    str(src)],
                   check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-m", "qconvert", "targets"], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "target 'onnx' is registered twice" in lines[0], proc.stderr
    assert "qconvert-onnx-fork 0.0.1" in lines[0] and "qconvert-onnx " in lines[0] and "Traceback" not in proc.stderr
