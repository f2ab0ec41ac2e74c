from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from qconvert.cli import main


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out += _commands(cmd, prefix + (name,))
        else:
            out.append(prefix + (name,))
    return out


@pytest.mark.parametrize("cmd", _commands(main), ids=lambda c: " ".join(c) or "qconvert")
def test_every_help_runs(cmd: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*cmd, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_help_imports_no_runtime() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from qconvert.cli import main\n"
        "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0\n"
        "heavy = {'torch', 'onnx', 'onnxruntime', 'torchao', 'tvm', 'ai_edge_litert', 'tensorrt'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_targets_lists_onnx() -> None:
    result = CliRunner().invoke(main, ["targets"])
    assert result.exit_code == 0
    assert "onnx" in result.output and "available" in result.output


def test_recipe_schema_command_prints_json() -> None:
    import json

    result = CliRunner().invoke(main, ["recipe", "schema"])
    assert json.loads(result.output)["title"] == "Recipe"
