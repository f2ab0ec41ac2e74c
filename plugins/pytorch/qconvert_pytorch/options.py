"""Options of the ``pytorch`` target (recipe section ``targets.pytorch``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from qconvert.targets import TargetOptions

__all__ = ["Backend", "Lowering", "PyTorchOptions"]

Backend = Literal["x86", "qnnpack"]
Lowering = Literal["auto", "inductor", "quantized_modules"]


class PyTorchOptions(TargetOptions):
    backend: Backend = Field(
        "x86",
        description="Integer kernels: x86 (oneDNN/fbgemm, x86 CPUs with AVX2/AVX-512/VNNI) or qnnpack (ARM boards).",
    )
    lowering: Lowering = Field(
        "auto",
        description="inductor: the Q/DQ graph as an ExportedProgram (.pt2) that torch.compile lowers to oneDNN int8 kernels "
        "(x86 only, needs a C++ compiler where it runs); quantized_modules: TorchScript (.pt) of torch.ao quantized modules, "
        "no compiler needed. auto: inductor for static 8-bit x86 models where a C++ compiler exists, else quantized_modules.",
    )

    @field_validator("lowering")
    @classmethod
    def _inductor_is_x86(cls, lowering: Lowering, info: ValidationInfo) -> Lowering:
        if lowering == "inductor" and info.data.get("backend") == "qnnpack":
            raise ValueError("inductor lowers int8 to oneDNN (x86) only; use lowering: quantized_modules (or auto) for qnnpack")
        return lowering
