"""Options of the ``onnx`` target (recipe section ``targets.onnx``)."""

from __future__ import annotations

from pydantic import Field

from qconvert.targets.base import TargetOptions

__all__ = ["OnnxOptions"]


class OnnxOptions(TargetOptions):
    simplify: bool = Field(False, description="Run onnxsim without constant folding, so weight DequantizeLinear nodes stay.")
    file_name: str = Field("model.onnx", description="Name of the ONNX file in OUT/onnx/.")
