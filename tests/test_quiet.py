"""qconvert.quiet: what libraries say during a build goes to the log, never to the terminal."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path


def test_logging_warnings_and_c_level_output_go_to_the_log(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import logging, os, sys, warnings
        from pathlib import Path
        from qconvert.quiet import captured, save_log
        pre = logging.getLogger("torch.export.x")          # configured before the capture, with its own handler
        pre.addHandler(logging.StreamHandler(sys.stderr)); pre.propagate = False
        with captured() as log:
            pre.warning("from a pre-configured logger")
            inside = logging.getLogger("onnxruntime.y")     # a handler created inside binds the captured stream
            inside.addHandler(logging.StreamHandler(sys.stderr)); inside.propagate = False
            inside.warning("from a logger set up inside")
            warnings.warn("a python warning")
            os.write(2, b"C-level stderr line\\n")
            os.write(1, b"C-level stdout line\\n")
            print("a third-party print")
            log.terminal.write("ours, on the terminal\\n")
            save_log(Path({str(tmp_path)!r}))
        print("after the block")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stderr == "ours, on the terminal\n"
    assert proc.stdout == "after the block\n"
    log = (tmp_path / "build.log").read_text()
    for said in ("from a pre-configured logger", "from a logger set up inside", "a python warning", "C-level stderr line",
                 "C-level stdout line", "a third-party print"):
        assert said in log, said


def test_state_is_restored_after_the_block() -> None:
    from qconvert.quiet import captured

    before = (sys.stdout, sys.stderr, list(logging.getLogger("torch").handlers), logging.getLogger("torch").propagate)
    try:
        with captured():
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert (sys.stdout, sys.stderr, list(logging.getLogger("torch").handlers), logging.getLogger("torch").propagate) == before
