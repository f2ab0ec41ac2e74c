"""TVM target strings: the familiar ``llvm -key=value`` form, parsed into a typed spec.

TVM 0.26 accepts only the JSON/dict form of a target; recipes and docs use the
command-line form, so it is parsed here, and the spec says whether the code runs
on this host or must be cross-compiled.
"""

from __future__ import annotations

import platform
import shlex
from dataclasses import dataclass

__all__ = ["TargetSpec", "parse_target"]

# Architecture names as they appear in an LLVM triple, per platform.machine() value.
_HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


@dataclass(frozen=True)
class TargetSpec:
    """One parsed LLVM target; ``attrs`` hold every ``-key=value`` flag as given."""

    text: str
    attrs: tuple[tuple[str, str], ...]

    @property
    def mtriple(self) -> str | None:
        return dict(self.attrs).get("mtriple")

    @property
    def arch(self) -> str:
        triple = self.mtriple
        return triple.split("-")[0] if triple else _HOST_ARCH.get(platform.machine().lower(), platform.machine())

    @property
    def is_host(self) -> bool:
        """Whether code built for this target runs here (same architecture as this machine)."""
        return self.arch == _HOST_ARCH.get(platform.machine().lower(), platform.machine())

    def as_tvm(self) -> dict[str, object]:
        """The dict TVM's ``Target`` takes: list-valued flags (mattr, keys, libs) split on commas."""
        out: dict[str, object] = {"kind": "llvm"}
        for key, value in self.attrs:
            out[key] = value.split(",") if key in ("mattr", "keys", "libs") else value
        return out


def parse_target(text: str) -> TargetSpec:
    """Parse ``llvm [-key=value ...]``; ValueError says what is wrong."""
    tokens = shlex.split(text)
    if not tokens or tokens[0] != "llvm":
        raise ValueError(f"'{text}': only CPU targets of kind 'llvm' are supported, e.g. 'llvm' or 'llvm -mtriple=aarch64-linux-gnu'")
    attrs: list[tuple[str, str]] = []
    for tok in tokens[1:]:
        key, sep, value = tok.lstrip("-").partition("=")
        if not tok.startswith("-") or not sep or not key or not value:
            raise ValueError(f"'{text}': expected -key=value, got '{tok}'")
        attrs.append((key, value))
    return TargetSpec(text, tuple(attrs))
