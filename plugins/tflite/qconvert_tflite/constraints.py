"""What full-integer TFLite can represent, as ``QuantConstraints`` the core enforces.

TFLite's int8 kernels take symmetric int8 weights (zero point 0, [-127, 127], per
channel on the output-channel axis for conv, depthwise conv and fully connected),
int8 activations with a zero point, and int32 biases with scale = input scale x
weight scale. uint8 activations are the same grid as int8 with the zero point
moved by 128, so ``asym_u`` is stored that way and changes no value.

16-bit activations are TFLite's 16x8 mode: int16 activations with zero point 0 (``sym``),
int8 weights, int64 biases (``flatbuffer.widen_16x8_biases`` stores them so).
"""

from __future__ import annotations

from qconvert.targets import QuantConstraints

__all__ = ["TFLITE_CONSTRAINTS"]

TFLITE_CONSTRAINTS = QuantConstraints(
    activation_modes=frozenset({"asym_s", "sym"}),
    weight_modes=frozenset({"sym"}),
    max_activation_bits=16,
    wide_activation_modes=frozenset({"sym"}),
    max_weight_bits=8,
    weight_per_channel=True,
    narrow_weights=True,
    # XNNPACK (LiteRT's CPU path) requantizes the exact int32 sum in float32, rounding half to even
    requantize_arithmetic="fp32",
    activation_mode_equivalents=(("asym_u", "asym_s"),),
    # Weight-only: litert-torch keeps int8 weights behind DEQUANTIZE ops feeding float kernels (checked on
    # digits: parity 4e-6). Activation-only (float weights between activation Q/DQ) failed to load in LiteRT.
    partial_schemes=frozenset({"weights"}),
    partial_refusal="litert-torch's lowering of float weights between quantized activations did not load in LiteRT "
    "(XNNPACK rejected its tensors)",
    notes=("asym_u activations are stored as int8 with zero point - 128 (the same grid)",
           "16-bit activations: TFLite's 16x8 mode (int16 activations, zero point 0; int8 weights; int64 biases)"),
)
