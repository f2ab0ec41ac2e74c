"""Every bad input: one clear line, exit code 2, no traceback, no OUT left behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from qconvert.cli import main
from qconvert.testing import digits_build_args as digits_args

UNCAPTURABLE = '''
import torch
class Branchy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
    def forward(self, x):
        y = self.conv(x)
        if float(y.mean()) > 0:   # data-dependent Python control flow
            return y * 2
        return y
def build():
    return Branchy()
'''


def _args(digits: dict[str, Path], out: Path, **changes: str) -> list[str]:
    args = digits_args(digits, out, "onnx")
    for flag, value in changes.items():
        flag = "--" + flag.replace("_", "-")
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args


def _case_recipe(tmp: Path, text: str) -> str:
    p = tmp / "recipe.yaml"
    p.write_text(text)
    return str(p)


CASES = {
    "model file missing": (lambda d, t: {"model": "nope/model.py:build"}, "model file not found: nope/model.py"),
    "factory missing": (lambda d, t: {"model": f"{d['model']}:nope"}, "'nope' is not a callable"),
    "weights missing": (lambda d, t: {"weights": str(t / "w.pt")}, "weights file not found"),
    "weights corrupt": (lambda d, t: {"weights": _write(t / "w.pt", "garbage")}, "not a loadable state dict"),
    "weights of another model": (lambda d, t: {"weights": _other_weights(t)}, "weights do not fit the model"),
    "recipe missing": (lambda d, t: {"recipe": str(t / "r.yaml")}, "recipe file not found"),
    "recipe unknown key": (lambda d, t: {"recipe": _case_recipe(t, "version: 1\ncalibraton: {}\n")},
                           "recipe.yaml:2: calibraton: unknown key"),
    "recipe malformed yaml": (lambda d, t: {"recipe": _case_recipe(t, "version: 1\nweights: {bits: 8\n")}, "not valid YAML"),
    "unknown layer name": (lambda d, t: {"recipe": _case_recipe(t, "version: 1\nexclude: [stem.O]\n")},
                           "'stem.O' matches no layer of the model (did you mean: stem."),
    "calib data missing": (lambda d, t: {"calib_data": str(t / "c.npz")}, "data not found"),
    "data shape does not fit the model": (
        lambda d, t: {"calib_data": _npz(t / "c.npz", (4, 3, 16, 16)), "recipe": _case_recipe(t, "version: 1\n")},
        "the model cannot run on inputs of shape (2, 3, 16, 16)",
    ),
    "data shape differs from recipe input_shape": (
        lambda d, t: {"calib_data": _npz(t / "c.npz", (4, 3, 16, 16))}, "samples have shape (3, 16, 16) but the input shape is (1, 16, 16)"
    ),
    "input shape disagrees with data": (lambda d, t: {"input_shape": "1,1,32,32"},
                                        "samples have shape (1, 16, 16) but the input shape is (1, 32, 32)"),
    "npz without x": (lambda d, t: {"calib_data": _npz(t / "c.npz", (4, 1, 16, 16), key="images")}, "no array for model input(s) ['x']"),
    "uncapturable model": (lambda d, t: {"model": _write(t / "m.py", UNCAPTURABLE) + ":build", "weights": ""},
                           "torch.export cannot capture the model"),
    "unknown target": (lambda d, t: {"target": "onxx"}, "unknown target 'onxx' (did you mean: onnx?)"),
    "stats of another model": (lambda d, t: {"stats": _foreign_stats(t)}, "statistics were collected on another model"),
    "saved program with a fixed batch": (
        lambda d, t: {"model": _static_batch_program(d, t), "weights": ""}, "was exported with a fixed batch of 1; qconvert runs the model"
    ),
}


def _write(p: Path, text: str) -> str:
    p.write_text(text)
    return str(p)


def _npz(p: Path, shape: tuple[int, ...], key: str = "x") -> str:
    np.savez(p, **{key: np.zeros(shape, np.float32)})
    return str(p)


def _other_weights(t: Path) -> str:
    import torch

    p = t / "other.pt"
    torch.save(torch.nn.Linear(3, 3).state_dict(), p)
    return str(p)


def _static_batch_program(d: dict[str, Path], t: Path) -> str:
    import torch

    from qconvert.io.model import load_model

    model = load_model(f"{d['model']}:build", str(d["weights"]))
    torch.export.save(torch.export.export(model, (torch.zeros(1, 1, 16, 16),)), t / "static.pt2")
    return str(t / "static.pt2")


def _foreign_stats(t: Path) -> str:
    from qconvert.core.stats import StatsSet

    StatsSet("0000000000000000", {}).save(t / "stats")
    return str(t / "stats")


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_one_line_exit_2_no_out(case: str, digits: dict[str, Path], tmp_path: Path) -> None:
    change, expected = CASES[case]
    out = tmp_path / "OUT"
    changes = change(digits, tmp_path)
    args = _args(digits, out, **{k: v for k, v in changes.items() if v})
    if "weights" in changes and not changes["weights"]:
        i = args.index("--weights")
        del args[i : i + 2]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".OUT")], "temporary output left behind"


def test_real_process_prints_no_traceback(tmp_path: Path, digits: dict[str, Path]) -> None:
    recipe = _case_recipe(tmp_path, "version: 1\nactivations: {bits: 99}\n")
    proc = subprocess.run([sys.executable, "-m", "qconvert", *_args(digits, tmp_path / "OUT", recipe=recipe)], check=False,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "recipe.yaml:2: activations.bits" in proc.stderr
    assert not (tmp_path / "OUT").exists()


def test_recipe_validate_command(tmp_path: Path, digits: dict[str, Path]) -> None:
    ok = CliRunner().invoke(main, ["recipe", "validate", str(digits["recipe"])])
    assert ok.exit_code == 0 and "ok" in ok.output
    bad = CliRunner().invoke(main, ["recipe", "validate", _case_recipe(tmp_path, "version: 2\n")])
    assert bad.exit_code == 2 and "recipe.yaml:1: version" in bad.output


def test_saved_exported_program_builds(tmp_path: Path, digits: dict[str, Path]) -> None:
    """--model file.pt2: a saved torch.export ExportedProgram is a model input like a factory."""
    import torch

    from qconvert.io.model import load_model

    model = load_model(f"{digits['model']}:build", str(digits["weights"]))
    batch = torch.export.Dim("batch")
    ep = torch.export.export(model, (torch.zeros(2, 1, 16, 16),), dynamic_shapes=({0: batch},))
    torch.export.save(ep, tmp_path / "digits.pt2")
    args = _args(digits, tmp_path / "OUT", model=str(tmp_path / "digits.pt2"))
    i = args.index("--weights")
    del args[i : i + 2]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "OUT" / "onnx" / "model.onnx").is_file()
