"""The error hierarchy and the exit codes the CLI maps it to.

Core code raises these and never prints or exits; ``qconvert.cli`` is the only
place that turns them into a message line and an exit code.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_GATE_FAILED",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_TARGET_UNAVAILABLE",
    "BadInputError",
    "CaptureError",
    "ConstraintError",
    "DataError",
    "GateFailedError",
    "ModelLoadError",
    "PluginConflictError",
    "PluginError",
    "QConvertError",
    "RecipeError",
    "StatsError",
    "TargetUnavailableError",
    "did_you_mean",
]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_GATE_FAILED = 3
EXIT_TARGET_UNAVAILABLE = 4


class QConvertError(Exception):
    """Base of every error qconvert raises on purpose."""

    exit_code = EXIT_INTERNAL


class BadInputError(QConvertError):
    """Something the user gave us is wrong; the message says how to fix it."""

    exit_code = EXIT_BAD_INPUT


class RecipeError(BadInputError):
    """A recipe file that does not parse or validate."""


class ModelLoadError(BadInputError):
    """A model reference or weights file that cannot be loaded."""


class DataError(BadInputError):
    """Calibration or evaluation data that cannot be read or does not fit the model."""


class CaptureError(BadInputError):
    """A model that torch.export cannot capture."""


class ConstraintError(BadInputError):
    """A recipe asks a target for a scheme the target cannot represent."""


class StatsError(BadInputError):
    """A statistics directory that is missing, corrupt, or from another model."""


class PluginError(QConvertError):
    """A target plugin that is installed but broken (import or interface error)."""


class PluginConflictError(PluginError):
    """Two installed distributions register the same target name: the user must uninstall one."""

    exit_code = EXIT_BAD_INPUT


class GateFailedError(QConvertError):
    """One or more accuracy gates or parity checks failed; one line per failure."""

    exit_code = EXIT_GATE_FAILED

    def __init__(self, failures: list[str]) -> None:
        super().__init__("\n".join(failures))
        self.failures = failures

    def __reduce__(self) -> tuple[type[GateFailedError], tuple[list[str]], dict[str, object]]:
        return type(self), (self.failures,), self.__dict__  # pickles (a build's worker process sends it back)


class TargetUnavailableError(QConvertError):
    """A requested target's runtime is not installed or cannot run here."""

    exit_code = EXIT_TARGET_UNAVAILABLE


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return a ' (did you mean: a, b?)' suffix, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""
