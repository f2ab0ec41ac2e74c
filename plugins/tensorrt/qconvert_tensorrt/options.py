"""Options of the ``tensorrt`` target (recipe section ``targets.tensorrt``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from qconvert.targets import TargetOptions

__all__ = ["TensorRTOptions"]


class TensorRTOptions(TargetOptions):
    engine: Literal["auto", "skip", "require"] = Field(
        "auto",
        description="auto: build and run the engine where tensorrt and a GPU are present, else emit the ONNX, "
        "build_engine.py and trtexec.sh and verify the ONNX in onnxruntime; skip: never build; "
        "require: fail (exit 4) where the engine cannot be built.",
    )
    fp16: bool = Field(True, description="Let layers without Q/DQ run in FP16 (INT8 with FP16 fallback); off: they run in FP32.")
    min_batch: int = Field(1, ge=1, description="Smallest batch of the engine's optimization profile.")
    opt_batch: int = Field(8, ge=1, description="Batch the engine's kernels are tuned for.")
    max_batch: int = Field(64, ge=1, description="Largest batch of the engine's optimization profile.")
    workspace_mib: int = Field(1024, ge=16, description="Builder workspace memory limit, MiB.")
    file_name: str = Field("model.onnx", description="Name of the ONNX file in OUT/tensorrt/.")
    engine_file: str = Field("model.engine", description="Name of the serialized engine written next to it.")
    timing_cache: str = Field("timing.cache", description="Builder timing cache, reused and updated by every build in that folder.")

    @model_validator(mode="after")
    def _batches_ordered(self) -> TensorRTOptions:
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(f"need min_batch <= opt_batch <= max_batch, got {self.min_batch}, {self.opt_batch}, {self.max_batch}")
        return self
