"""What the tflite target records about its artifact (manifest.json ``artifact.details``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from qconvert.targets import ArtifactDetails

__all__ = ["Int8Edge", "TensorSlot", "TfliteDetails"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Int8Edge(_Frozen):
    """A model input or output as a device feeds or reads it: storage type and quantization."""

    name: str
    dtype: str
    shape: list[int]
    scale: float | None
    zero_point: int | None


class TensorSlot(_Frozen):
    """Where one simulation quantize node's integers are in the .tflite, and how to read them as the simulation's."""

    tensor: str
    index: int
    perm: list[int] | None
    reshape: bool
    shape: list[int]


class TfliteDetails(ArtifactDetails):
    model_config = ConfigDict(extra="forbid", frozen=True)

    io: Literal["float", "int8"]
    batch: int
    #: What a device needs to feed raw int8 and read int8: the quantized edges of the graph.
    int8_inputs: list[Int8Edge]
    int8_outputs: list[Int8Edge]
    op_counts: dict[str, int]
    float_ops: list[str]
    narrow_range_bounds: int
    #: Simulation quantize node -> .tflite tensor, for per-layer parity (``qconvert_tflite.intermediates``);
    #: None until ``emit`` mapped them.
    quantized_tensors: dict[str, TensorSlot] | None = None
