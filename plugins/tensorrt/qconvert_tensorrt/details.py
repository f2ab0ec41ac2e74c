"""What the tensorrt target records about its artifact (manifest.json ``artifact.details``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from qconvert.targets import ArtifactDetails

__all__ = ["EngineFiles", "TensorRTDetails"]


class EngineFiles(BaseModel):
    """Whether the engine was built here, and the files that build it on a GPU machine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    built: bool
    reason: str
    file: str
    script: str
    config: str
    trtexec: str


class TensorRTDetails(ArtifactDetails):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The explicit-quantization ONNX the engine is built from (what runs in onnxruntime without a GPU).
    onnx: str
    opset: int
    placement: str
    engine: EngineFiles
    #: Layers per precision TensorRT is expected to choose.
    layer_precision: dict[str, int]
    #: Simulation quantize node -> ONNX tensor: per-layer parity of the ONNX in onnxruntime.
    quantized_tensors: dict[str, str]
