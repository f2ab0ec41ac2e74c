"""What TIDL represents, as ``QuantConstraints`` the core enforces.

TIDL-RT quantizes with power-of-two scales, symmetric, per tensor; a feature
map that is never negative (a ReLU output) uses the unsigned range, one more
bit (TI's TIDL-RT user guide, "TIDL-RT: Quantization"; edgeai-tidl-tools
docs/tidl_fsg_quantization.md, "Simple Calibration": power-of-2 scales for
feature maps). Per-channel weights exist for depthwise convolutions only
(legacy calibrationOption flag 8). Bit widths are 8 or 16 (``tensor_bits``).
"""

from __future__ import annotations

from qconvert.targets import ConstraintError, QuantConstraints, Recipe
from qconvert_tidl.options import TidlOptions

__all__ = ["TIDL_BITS", "check_bits", "tidl_constraints"]

TIDL_BITS = (8, 16)


def tidl_constraints(options: TidlOptions) -> QuantConstraints:
    return QuantConstraints(
        activation_modes=frozenset({"sym"}),
        weight_modes=frozenset({"sym"}),
        max_activation_bits=16,
        max_weight_bits=16,
        weight_per_channel=options.per_channel_depthwise,
        per_channel_depthwise_only=True,
        power_of_two="required",
        unsigned_nonnegative=True,
        narrow_weights=True,
        notes=("power-of-two symmetric scales; unsigned feature maps where the range is non-negative",),
        partial_schemes=frozenset(),
        partial_refusal="TIDL quantizes weights and feature maps together (one tensor_bits for both)",
    )


def check_bits(recipe: Recipe) -> None:
    """TIDL runs 8- or 16-bit tensors only; other widths have no ``tensor_bits`` value.

    Raises:
        ConstraintError: a scheme of the recipe uses another bit width.
    """
    overrides = [(f"overrides[{i}].{k}", s) for i, o in enumerate(recipe.overrides) for k, s in (("weights", o.weights),
                                                                                                  ("activations", o.activations))]
    schemes = [("weights", recipe.weights), ("activations", recipe.activations), *overrides]
    for where, scheme in schemes:
        if scheme is not None and scheme.bits not in TIDL_BITS:
            raise ConstraintError(
                f"target 'tidl': recipe {where}.bits is {scheme.bits}; TIDL runs 8- or 16-bit tensors (tensor_bits 8 or 16)"
            )
