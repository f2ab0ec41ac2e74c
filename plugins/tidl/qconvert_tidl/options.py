"""Options of the ``tidl`` target (recipe section ``targets.tidl``).

Bit widths are not options here: ``tensor_bits`` (and the legacy
``numParamBits``/``numFeatureBits``) come from the recipe's schemes, and the
16-bit layer lists from its per-layer overrides, so one recipe stays the single
source of truth for the simulation and for every TIDL config.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from qconvert.targets import TargetOptions

__all__ = ["Soc", "TidlOptions"]

#: SOC names of edgeai-tidl-tools (docs/advanced_setup.md: am62a, am67a, am68a, am69a, am68pa = TDA4VM).
Soc = Literal["am68pa", "am68a", "am69a", "am62a", "am67a"]


class TidlOptions(TargetOptions):
    soc: Soc = Field("am68pa", description="Device family for the compile scripts (edgeai-tidl-tools SOC; am68pa is TDA4VM).")
    per_channel_depthwise: bool = Field(
        False,
        description="Allow per-channel weights for depthwise convolutions only (TIDL calibrationOption flag 8); "
        "the recipe's weights must then be per_channel, other layers are adapted to per_tensor.",
    )
    deny_layer_types: tuple[str, ...] = Field(
        (), description="ONNX op types kept on the host CPU (deny_list:layer_type for ONNX Runtime and TVM)."
    )
    deny_layer_types_tflite: tuple[int, ...] = Field(
        (), description="TFLite builtin operator codes kept on the host CPU (deny_list:layer_type for the TFLite delegate)."
    )
    deny_layer_names: tuple[str, ...] = Field(
        (), description="Layer (output tensor) names kept on the host CPU (deny_list:layer_name)."
    )
    tflite: bool = Field(True, description="Also write the float Clip model as TFLite (needs litert-torch).")
