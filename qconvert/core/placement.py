"""Where a target wants Q/DQ pairs in the graph, declared by the target and applied by the core.

Runtimes fuse differently, so the same calibration statistics are quantized at
different tensors: integer CPU runtimes (onnxruntime, TFLite) want every fused
op's input and output quantized, while TensorRT quantizes only what its int8
kernels read (conv/GEMM inputs, the residual branch of an add) and lets the
consumer decide about each output. The core's quantizer reads one ``Placement``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

__all__ = ["DEFAULT_PLACEMENT", "Placement"]


@dataclass(frozen=True)
class Placement:
    """The graph rules the quantizer applies; the defaults are the core's original placement.

    Attributes:
        outputs: quantize the output of every quantized op (after a fused ReLU/ReLU6),
            so the runtime can emit int8 from it. Off: an output is quantized only
            where a consumer quantizes its input.
        elementwise: ``"all"`` quantizes both inputs (and, with ``outputs``, the
            output) of add and mul; ``"add"`` does so for add only, mul stays float. ``"residual_add"`` quantizes only an add fed
            by a conv/linear whose single user it is, and only on its other
            input(s), so the add fuses into that conv as its epilogue; mul and
            other adds stay float.
        pool_and_concat: quantize the inputs and output of average pools and
            concatenations.
        int32_bias: quantize conv/linear biases to int32 with scale = input scale x
            weight scale; off keeps biases float (TensorRT's ONNX parser expects that).
        quantize_at: ``"producer"`` puts one Q/DQ after a quantized tensor, read by
            all its users; ``"consumer"`` puts it only on the edges into the ops
            the rules quantize, so other users (a LayerNorm beside a residual add)
            read the float tensor.
        name: shown in reports.
    """

    outputs: bool = True
    elementwise: Literal["all", "add", "residual_add"] = "all"
    pool_and_concat: bool = True
    int32_bias: bool = True
    quantize_at: Literal["producer", "consumer"] = "producer"
    name: str = "default"

    def for_accuracy(self) -> Placement:
        """The same rules with Q/DQ only at compute ops (conv, linear, matmul) and adds:
        ``optimize_for: accuracy`` keeps mul, pools and concatenations float."""
        elementwise = "add" if self.elementwise == "all" else self.elementwise
        return replace(self, elementwise=elementwise, pool_and_concat=False, name=f"{self.name} (accuracy)")


DEFAULT_PLACEMENT = Placement()
