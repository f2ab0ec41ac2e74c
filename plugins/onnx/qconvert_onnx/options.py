"""Options of the ``onnx`` target (recipe section ``targets.onnx``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from qconvert.targets import TargetOptions

__all__ = ["OnnxOptions"]


class OnnxOptions(TargetOptions):
    simplify: bool = Field(False, description="Run onnxsim without constant folding, so weight DequantizeLinear nodes stay.")
    file_name: str = Field("model.onnx", description="Name of the ONNX file in OUT/onnx/.")
    device: Literal["x86", "x86_avx2", "arm64"] = Field(
        "x86",
        description="CPU the model will run on, for the types its int8 kernels run fastest (optimize_for: speed): "
        "x86 (AVX-512 VNNI / AVX-VNNI) takes uint8 activations with int8 weights (U8S8); x86_avx2 (no VNNI) the same "
        "with 7-bit weights, since its kernels add pairs of products in saturating int16; arm64 takes int8 activations (S8S8).",
    )
