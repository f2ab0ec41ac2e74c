"""Options of the ``tvm`` target (recipe section ``targets.tvm``)."""

from __future__ import annotations

from pydantic import Field, field_validator

from qconvert.targets import TargetOptions
from qconvert_tvm.target_spec import parse_target

__all__ = ["TvmOptions"]


class TvmOptions(TargetOptions):
    target: str = Field(
        "llvm",
        description="TVM target in the usual command-line form: 'llvm' for this host, or e.g. "
        "'llvm -mtriple=aarch64-linux-gnu -mattr=+neon' for an ARM board (cross-compiled when the "
        "toolchain '<triple>-g++' is on PATH, else the Relax module and object files are written).",
    )
    cross_compiler: str | None = Field(
        None, description="C++ compiler that links a cross-compiled library; default: '<mtriple>-g++' when on PATH."
    )
    file_name: str = Field("model.so", description="Name of the compiled library in OUT/tvm/.")

    @field_validator("target")
    @classmethod
    def _parses(cls, value: str) -> str:
        parse_target(value)  # raises ValueError with the reason; pydantic reports it with the key path
        return value
