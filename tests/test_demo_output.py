"""`make demo` prints only what qconvert writes: no third-party warning, log or C++ line (those go to OUT/build.log)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Every line qconvert's `build` prints: the table, the summary, fallback and gate lines, its own notes and progress.
OURS = re.compile(r"^(\|.*\||wrote .*|auto_fallback kept .*|gate failed: .*|(warning|note): .*|\.\.\. .*|)$")


@pytest.mark.slow
def test_make_demo_prints_only_qconvert_lines(tmp_path: Path) -> None:
    venv = Path(sys.prefix)
    r = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "demo", f"VENV={venv}", f"DEMO_OUT={tmp_path / 'OUT'}"],
                       capture_output=True, text=True, timeout=1800, check=False)
    lines = (r.stdout + r.stderr).splitlines()
    print("\n".join(lines))
    assert r.returncode == 0, r.stderr[-3000:]
    foreign = [line for line in lines if not OURS.match(line)]
    assert not foreign, f"lines qconvert did not write: {foreign[:10]}"
    assert any(line.startswith("| onnx ") for line in lines) and any(line.startswith("wrote ") for line in lines)



NOISY_MODEL = """
import os, sys, warnings
sys.path.insert(0, {digits!r})
from model import DigitsNet

def build():
    warnings.warn("a library's FutureWarning", FutureWarning)
    os.write(2, b"I0000 00:00:1 fake_export.cc:42] a C++ log line\\n")
    print("a library's print()")
    return DigitsNet()
"""


def test_verbose_shows_what_build_log_keeps(digits: dict[str, Path], tmp_path: Path) -> None:
    """A model whose factory talks like a library (Python warning, C-level write to fd 2, print):
    with --verbose each line reaches the terminal's stderr and OUT/build.log; stdout stays ours."""
    from qconvert.testing import digits_build_args

    (tmp_path / "noisy.py").write_text(NOISY_MODEL.format(digits=str(digits["model"].parent)))
    args = digits_build_args(digits, tmp_path / "OUT", "onnx")
    args[args.index("--model") + 1] = f"{tmp_path / 'noisy.py'}:build"
    r = subprocess.run([sys.executable, "-m", "qconvert", *args, "--no-latency", "--verbose"],
                       capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    log = (tmp_path / "OUT" / "build.log").read_text()
    for said in ("a library's FutureWarning", "fake_export.cc:42] a C++ log line", "a library's print()"):
        assert said in log and said in r.stderr, (said, r.stderr[-2000:], log[-2000:])
    assert all(OURS.match(line) for line in r.stdout.splitlines()), r.stdout
