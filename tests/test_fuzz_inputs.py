"""Fuzz-style bad input: every input file kind of a valid build, damaged every way, and every output path.

Each input kind (recipe, weights, .pt2, QAT checkpoint, .npz, .npy, image folder, stats
directory, manifest, golden file) is taken from a valid build and made truncated, bit-flipped
(one bit of its format's first byte: a zip or npy magic, a YAML key, a JSON brace), emptied,
replaced by another kind's bytes, or replaced by a directory (a directory kind: by a file).
Every case must exit 2 with one line and no traceback, and leave nothing behind. The default
run covers every kind emptied and truncated; ``make test-all`` runs every combination.
Output paths (OUT is a file, its parent is a file, no write permission, a directory of other
files) and Ctrl-C at several points of a build are covered in the default run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from qconvert.cli import main

MUTATIONS = ("truncated", "bitflipped", "emptied", "wrong_format", "swapped_kind")
FAST_MUTATIONS = ("truncated", "emptied")


@dataclass(frozen=True)
class Kind:
    """One input kind: the file (or directory) to damage, and the command that reads it."""

    name: str
    path: Callable[[Path], Path]  # the valid file/dir inside a fresh copy of the inputs
    args: Callable[[Path, Path], list[str]]  # (copy of inputs, OUT) -> CLI args
    is_dir: bool = False


def _build_args(v: Path, out: Path, **change: str) -> list[str]:
    args = ["build", "--model", f"{v / 'model.py'}:build", "--weights", str(v / "weights.pt"), "--recipe", str(v / "recipe.yaml"),
            "--calib-data", str(v / "calib.npz"), "--eval-data", str(v / "calib.npz"), "--target", "onnx", "--out", str(out),
            "--no-latency"]
    for flag, value in change.items():
        flag = "--" + flag.replace("_", "-")
        if flag not in args:
            args += [flag, value]
            continue
        i = args.index(flag)
        if value:
            args[i + 1] = value
        else:
            del args[i : i + 2]
    return args


KINDS = [
    Kind("recipe", lambda v: v / "recipe.yaml", lambda v, o: _build_args(v, o)),
    Kind("weights", lambda v: v / "weights.pt", lambda v, o: _build_args(v, o)),
    Kind("pt2", lambda v: v / "model.pt2", lambda v, o: _build_args(v, o, model=str(v / "model.pt2"), weights="")),
    Kind("qat_checkpoint", lambda v: v / "digits.pt", lambda v, o: _build_args(v, o, model=str(v / "digits.pt"), weights="",
                                                                                 recipe="", calib_data="")),
    Kind("npz", lambda v: v / "calib.npz", lambda v, o: _build_args(v, o, eval_data=str(v / "eval.npz"))),
    Kind("npy", lambda v: v / "calib.npy", lambda v, o: _build_args(v, o, calib_data=str(v / "calib.npy"))),
    Kind("image", lambda v: v / "images" / "img_003.png",
         lambda v, o: _build_args(v, o, calib_data=str(v / "images"), recipe=str(v / "images.yaml"))),
    Kind("image_folder", lambda v: v / "images", lambda v, o: _build_args(v, o, calib_data=str(v / "images"),
                                                                             recipe=str(v / "images.yaml")), is_dir=True),
    Kind("stats_json", lambda v: v / "stats" / "stats.json", lambda v, o: _build_args(v, o, calib_data="", stats=str(v / "stats"))),
    Kind("stats_histograms", lambda v: v / "stats" / "histograms.npz",
         lambda v, o: _build_args(v, o, calib_data="", stats=str(v / "stats"))),
    Kind("stats_dir", lambda v: v / "stats", lambda v, o: _build_args(v, o, calib_data="", stats=str(v / "stats")), is_dir=True),
    Kind("manifest", lambda v: v / "built" / "onnx" / "manifest.json", lambda v, o: ["verify", str(v / "built" / "onnx")]),
    Kind("golden", lambda v: v / "built" / "onnx" / "golden" / "input_x.npy", lambda v, o: ["verify", str(v / "built" / "onnx")]),
    Kind("verify_data", lambda v: v / "verify.npz", lambda v, o: ["verify", str(v / "built" / "onnx"), "--data", str(v / "verify.npz")]),
]


@pytest.fixture(scope="session")
def valid_inputs(digits: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One valid input of every kind, each checked to build (or verify) with exit 0 before it is damaged."""
    from PIL import Image

    from qconvert import qat
    from qconvert.io.model import load_model
    from qconvert.qat.checkpoint import save

    v = tmp_path_factory.mktemp("valid")
    shutil.copy(digits["model"], v / "model.py")
    shutil.copy(digits["weights"], v / "weights.pt")
    recipe = yaml.safe_load(digits["recipe"].read_text())
    recipe["calibration"] = {"num_samples": 64, "batch_size": 32}
    recipe["gates"] = {}  # an untrained QAT checkpoint must build too
    (v / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))  # starts with "version": a flipped bit makes a key typo
    with np.load(digits["calib"]) as z:
        x, y = z["x"][:64], z["y"][:64]
    np.savez(v / "calib.npz", x=x, y=y)
    np.savez(v / "eval.npz", x=x[:32], y=y[:32])
    np.save(v / "calib.npy", x)
    (v / "images").mkdir()
    for i in range(8):
        pixels = np.clip(x[i, 0] * 255, 0, 255).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(v / "images" / f"img_{i:03d}.png")
    (v / "images.yaml").write_text(yaml.safe_dump(recipe | {"preprocess": {"size": [16, 16], "mean": [0.0], "std": [1.0],
                                                                             "channel_order": "gray"}, "gates": {}}, sort_keys=False))
    model = load_model(f"{v / 'model.py'}:build", str(v / "weights.pt"))
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(model, (torch.from_numpy(x[:2]),), dynamic_shapes=({0: batch},)), v / "model.pt2")
    q = qat.prepare(model, v / "recipe.yaml", torch.from_numpy(x[:2]), calibration=[(torch.from_numpy(x),)])
    save(q.eval(), v / "digits.pt")
    runner = CliRunner()
    calib = runner.invoke(main, ["calibrate", "--model", f"{v / 'model.py'}:build", "--weights", str(v / "weights.pt"), "--recipe",
                                 str(v / "recipe.yaml"), "--calib-data", str(v / "calib.npz"), "--out", str(v / "stats")])
    assert calib.exit_code == 0, calib.output
    built = runner.invoke(main, _build_args(v, v / "built"))
    assert built.exit_code == 0, built.output
    golden = v / "built" / "onnx" / "golden"
    np.savez(v / "verify.npz", input_x=np.load(golden / "input_x.npy"), **{p.stem: np.load(p) for p in golden.glob("output_*.npy")})
    return v


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_every_kinds_command_passes_on_the_valid_inputs(valid_inputs: Path, tmp_path: Path, kind: Kind) -> None:
    """The damaged cases fail because of the damage: undamaged, each command exits 0."""
    r = CliRunner().invoke(main, kind.args(valid_inputs, tmp_path / "OUT"))
    assert r.exit_code == 0, r.output


def _other_kind(path: Path, v: Path) -> bytes:
    """Bytes of a different input kind: a .npz for text files, the recipe for binary ones."""
    if path.suffix in (".yaml", ".json"):
        return (v / "calib.npz").read_bytes()
    if path.suffix == ".npz":
        return (v / "weights.pt").read_bytes()
    return (v / "recipe.yaml").read_bytes()


def _mutate(path: Path, how: str, v: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
        path.write_bytes(b"" if how == "emptied" else (v / "recipe.yaml").read_bytes())  # a file where a directory is expected
        return
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "bitflipped":
        path.write_bytes(bytes([data[0] ^ 0x01]) + data[1:])
    elif how == "emptied":
        path.write_bytes(b"")
    elif how == "wrong_format":
        path.write_bytes(_other_kind(path, v))
    elif how == "swapped_kind":  # a directory where the file is expected
        path.unlink()
        path.mkdir()
        (path / "x").write_text("not me")


def _leftovers(root: Path, before: set[str]) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name not in before)


def _check_one(valid_inputs: Path, tmp_path: Path, kind: Kind, how: str) -> None:
    v = tmp_path / "in"
    shutil.copytree(valid_inputs, v)
    target = kind.path(v)
    _mutate(target, how, v)
    out = tmp_path / "OUT"
    before = {p.name for p in tmp_path.iterdir()}
    built_before = sorted(p.name for p in (v / "built").rglob("*"))
    r = CliRunner().invoke(main, kind.args(v, out))
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == 2, f"{kind.name} {how}: exit {r.exit_code}: {r.output}"
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert "Traceback" not in r.output
    assert not out.exists() and not _leftovers(tmp_path, before), "left behind"
    assert sorted(p.name for p in (v / "built").rglob("*")) == built_before


def _cases(mutations: tuple[str, ...]) -> list[tuple[Kind, str]]:
    return [(k, m) for k in KINDS for m in mutations if not (k.is_dir and m in ("bitflipped", "truncated", "swapped_kind"))]


@pytest.mark.parametrize("kind, how", _cases(FAST_MUTATIONS), ids=lambda c: c.name if isinstance(c, Kind) else c)
def test_damaged_input_exit_2_one_line_nothing_left(valid_inputs: Path, tmp_path: Path, kind: Kind, how: str) -> None:
    _check_one(valid_inputs, tmp_path, kind, how)


@pytest.mark.slow
@pytest.mark.parametrize("kind, how", [c for c in _cases(MUTATIONS) if c[1] not in FAST_MUTATIONS],
                         ids=lambda c: c.name if isinstance(c, Kind) else c)
def test_damaged_input_every_mutation(valid_inputs: Path, tmp_path: Path, kind: Kind, how: str) -> None:
    _check_one(valid_inputs, tmp_path, kind, how)


# --- output paths -------------------------------------------------------------------------------

def _out_case(tmp_path: Path, case: str) -> Path:
    if case == "OUT is a file":
        (tmp_path / "OUT").write_text("mine")
        return tmp_path / "OUT"
    if case == "parent is a file":
        (tmp_path / "parent").write_text("mine")
        return tmp_path / "parent" / "sub" / "OUT"
    if case == "no write permission":
        if os.geteuid() == 0:
            pytest.skip("root writes anywhere: permission cannot be denied here")
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
        return tmp_path / "ro" / "OUT"
    (tmp_path / "OUT").mkdir()  # someone else's files, which replacing OUT would delete
    (tmp_path / "OUT" / "thesis.tex").write_text("mine")
    return tmp_path / "OUT"


@pytest.mark.parametrize("case", ["OUT is a file", "parent is a file", "no write permission", "OUT holds other files"])
def test_bad_output_path_exit_2_before_any_work(valid_inputs: Path, tmp_path: Path, case: str) -> None:
    out = _out_case(tmp_path, case)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    r = CliRunner().invoke(main, _build_args(valid_inputs, out))
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: --out ") and len(r.output.strip().splitlines()) == 1, r.output
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    if case != "no write permission":
        cal = CliRunner().invoke(main, ["calibrate", "--model", f"{valid_inputs / 'model.py'}:build", "--recipe",
                                        str(valid_inputs / "recipe.yaml"), "--calib-data", str(valid_inputs / "calib.npz"), "--out",
                                        str(out)])
        assert cal.exit_code == 2 and cal.output.startswith("error: --out "), cal.output


def test_out_under_missing_directories_is_created_and_removed_on_failure(valid_inputs: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("version: 1\ncalibration: {num_samples: 64}\nexclude: [nosuchlayer]\n")
    out = tmp_path / "a" / "b" / "OUT"
    r = CliRunner().invoke(main, _build_args(valid_inputs, out, recipe=str(tmp_path / "bad.yaml")))
    assert r.exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


# --- Ctrl-C -------------------------------------------------------------------------------------

INTERRUPT_AT = {
    "capturing the model": "qconvert.session.capture",
    "calibrating": "qconvert.pipeline.calibrate",
    "emitting a target": "qconvert.pipeline.write_golden",
    "writing the reports": "qconvert.pipeline.write_reports",
    "moving OUT into place": "pathlib.Path.rename",
}


def _interrupt(*_: object, **__: object) -> None:
    raise KeyboardInterrupt


_rename = Path.rename


def _interrupt_the_move(self: Path, target: Path) -> Path:
    """Ctrl-C between moving an earlier OUT aside and moving the new one in."""
    if self.name.startswith(".OUT.tmp-"):
        raise KeyboardInterrupt
    return _rename(self, target)


@pytest.mark.parametrize("point, earlier_out", [
    ("capturing the model", False), ("calibrating", False), ("emitting a target", False),
    ("writing the reports", True), ("moving OUT into place", True), ("moving OUT into place", False),
], ids=lambda v: v if isinstance(v, str) else ("earlier OUT" if v else "new OUT"))
def test_ctrl_c_exit_130_interrupted_nothing_left(valid_inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  point: str, earlier_out: bool) -> None:
    out = tmp_path / "OUT"
    if earlier_out:
        shutil.copytree(valid_inputs / "built", out)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    monkeypatch.setattr(INTERRUPT_AT[point], _interrupt_the_move if point == "moving OUT into place" else _interrupt)
    r = CliRunner().invoke(main, _build_args(valid_inputs, out))
    assert r.exit_code == 130, r.output
    assert r.output.strip() == "interrupted"
    # an earlier OUT is untouched; no new OUT, no temporary or .old directory
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


@pytest.mark.slow
@pytest.mark.parametrize("wait_for", ["temporary OUT", "build started"])
def test_real_sigint_in_a_build(valid_inputs: Path, tmp_path: Path, wait_for: str) -> None:
    """A real SIGINT to a real process: exit 130, 'interrupted', no traceback, no OUT, no temporary file or folder."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    out = tmp_path / "work" / "OUT"
    env = {**os.environ, "TMPDIR": str(tmpdir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "qconvert", *_build_args(valid_inputs, out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    # deterministic points: the build's temporary OUT exists (mid-build), or its log capture began (before the model loads)
    pattern = (tmp_path / "work", ".OUT.tmp-*") if wait_for == "temporary OUT" else (tmpdir, "qconvert-*.log")
    while time.monotonic() < deadline and not list(pattern[0].glob(pattern[1])) and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (stdout, stderr)
    assert stderr.strip() == "interrupted" and "Traceback" not in stderr + stdout
    assert not out.exists() and not (tmp_path / "work").exists()
    # torch leaves its caches (torchinductor_<user>, .ses) in TMPDIR on any run; temporary files and folders must not stay
    assert not [p.name for p in tmpdir.iterdir() if p.name.startswith(("qconvert", "tmp", ".OUT"))]


def test_corrupt_pt2_prints_one_line_in_a_real_process(valid_inputs: Path, tmp_path: Path) -> None:
    """torch.export.load logs its own traceback for a damaged archive; the user sees only our line."""
    bad = tmp_path / "model.pt2"
    data = (valid_inputs / "model.pt2").read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    proc = subprocess.run([sys.executable, "-m", "qconvert", *_build_args(valid_inputs, tmp_path / "OUT", model=str(bad), weights="")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"error: {bad}: not a readable saved torch.export"), proc.stderr


def test_empty_calib_data_is_bad_input_not_internal_error(valid_inputs: Path, tmp_path: Path) -> None:
    (tmp_path / "empty.npz").write_bytes(b"")
    r = CliRunner().invoke(main, _build_args(valid_inputs, tmp_path / "OUT", calib_data=str(tmp_path / "empty.npz")))
    assert r.exit_code == 2 and "is empty (0 bytes)" in r.output and "EOFError" not in r.output, r.output

