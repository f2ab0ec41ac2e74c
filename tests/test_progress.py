"""Progress bars draw on a terminal only; core loops pass items through untouched without one."""

from __future__ import annotations

import io

from qconvert.progress import TerminalProgress, reporting, track


def test_bar_on_a_terminal_silence_elsewhere() -> None:
    shown, quiet = io.StringIO(), io.StringIO()
    with reporting(TerminalProgress(True, shown)):
        assert list(track(range(5), 5, "calibrate")) == [0, 1, 2, 3, 4]
    with reporting(TerminalProgress(False, quiet)):
        assert list(track(range(5), 5, "calibrate")) == [0, 1, 2, 3, 4]
    assert quiet.getvalue() == ""
    assert shown.getvalue().endswith("\rcalibrate [" + "#" * 28 + "] 5/5\n")
    assert list(track(iter("ab"), 2, "no listener")) == ["a", "b"]
