"""What TensorRT's explicit quantization accepts, and where it wants the Q/DQ pairs.

TensorRT reads int8 only from QuantizeLinear/DequantizeLinear pairs in the ONNX
(its INT8 calibrators are deprecated since 10.1 and gone in 11). onnx-tensorrt
refuses a zero point other than 0, so both weights and activations are
symmetric; weights use [-127, 127] (the core's narrow range for symmetric
weights), per-channel on the output-channel axis, activations [-128, 127] per
tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from qconvert.targets import Mode, Placement, QuantConstraints, TensorQuant, Violation

__all__ = ["TENSORRT_PLACEMENT", "TensorRTConstraints"]

#: Rules, each tested on its own pattern in tests/test_placement.py:
#: 1. inputs of conv and linear (GEMM) and both inputs of matmul are quantized, weights per-channel;
#: 2. their outputs are not: the consumer decides, so conv + ReLU emit int8 only where the next layer reads int8;
#: 3. an add fed by a conv/linear (its only user) fuses into it: only the add's other input is quantized,
#:    giving conv + add (+ ReLU) with int8 input and, where the consumer quantizes, int8 output;
#: 4. mul, adds with no conv/linear producer, pools and concatenations get no Q/DQ of their own
#:    (a Q/DQ there would make TensorRT insert reformatting, not int8 kernels);
#: 5. biases stay float: TensorRT folds them into the int8 kernel itself;
#: 6. Q/DQ sit on the edges into those ops only: another user of the same tensor (a LayerNorm beside
#:    the residual add) reads it in float, with no DQ that TensorRT would have to run as a reformat.
TENSORRT_PLACEMENT = Placement(
    outputs=False, elementwise="residual_add", pool_and_concat=False, int32_bias=False, quantize_at="consumer", name="tensorrt"
)


@dataclass(frozen=True)
class TensorRTConstraints(QuantConstraints):
    """Symmetric int8 only. Unlike the base check, each fix here builds on the previous
    one, so a scheme that breaks several rules is adapted to one that meets all of them."""

    activation_modes: frozenset[Mode] = frozenset({"sym"})
    weight_modes: frozenset[Mode] = frozenset({"sym"})
    max_activation_bits: int = 8
    max_weight_bits: int = 8
    partial_schemes: frozenset[Literal["weights", "activations"]] = frozenset()
    partial_refusal: str = ("TensorRT's int8 conv/GEMM kernels take int8 inputs and int8 weights together "
                            "(explicit quantization); a partial scheme would run in float")
    narrow_weights: bool = True

    def check(self, tq: TensorQuant) -> list[Violation]:
        out: list[Violation] = []
        current = tq
        for _ in range(8):  # one rule fixed per round; there are fewer than 8 rules
            # bit widths are judged by the int8 rule alone, which says why
            base = QuantConstraints.check(replace(self, max_activation_bits=16, max_weight_bits=16), current)
            found = base + self._int8_only(current)
            if not found:
                break
            out.append(found[0])
            current = found[0].fixed
        return out

    @staticmethod
    def _int8_only(tq: TensorQuant) -> list[Violation]:
        bits = tq.scheme.bits
        if bits == 8:
            return []
        fixed = replace(tq, scheme=tq.scheme.model_copy(update={"bits": 8}))
        return [Violation("TensorRT's Q/DQ carries int8 only (no int16 type in its explicit quantization): "
                          f"{tq.role} bits must be 8, not {bits}", fixed)]
