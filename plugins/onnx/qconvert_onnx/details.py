"""What the onnx target records about its artifact (manifest.json ``artifact.details``)."""

from __future__ import annotations

from pydantic import ConfigDict

from qconvert.targets import ArtifactDetails

__all__ = ["OnnxDetails"]


class OnnxDetails(ArtifactDetails):
    model_config = ConfigDict(extra="forbid", frozen=True)

    opset: int
    #: DequantizeLinear nodes feeding weights (the Q/DQ form keeps weights as int8 initializers).
    weight_dequantize_nodes: int
    #: Clips bounding sub-8-bit activations (``export.narrow_ranges``).
    narrow_range_clips: int
    reduce_mean_as_global_pool: int
    float_layers_kept_float: int
    #: DequantizeLinear -> Pad -> QuantizeLinear patterns run as one Pad of the integers (``integer_pad``).
    pads_on_integers: int = 0
    #: Simulation quantize node -> the ONNX tensor holding its integers, for per-layer parity (``intermediates``).
    quantized_tensors: dict[str, str]
