"""qconvert target ``tidl``: TI TIDL (Jacinto 7 / TDA4x) via power-of-two Clip models and TIDL configs.

TIDL cannot run here. The artifact is the float Clip model TIDL imports
(verified in onnxruntime); the device is predicted by an integer simulation
of the power-of-two Q/DQ graph with TIDL's rounding (``extra_checks``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from qconvert.targets import Artifact, Availability, CheckContext, ExtraChecks, FastTypes, QuantConstraints, Target
from qconvert_tidl.details import TidlDetails
from qconvert_tidl.options import TidlOptions

if TYPE_CHECKING:
    import numpy as np

    from qconvert.targets import QuantizedModel

__all__ = ["TidlOptions", "TidlTarget"]


class TidlTarget(Target[TidlOptions]):
    """Clip models (ONNX, TFLite), TIDL import config and OSRT compile options, device predicted by simulation."""

    name = "tidl"
    build_cost = 1.6  # emit, verify and latency next to onnx's (the digits sample: see Target.build_cost)
    description = "TI TIDL: power-of-two Clip models + import/compile configs; device predicted by integer simulation"
    Options = TidlOptions
    api_version = 1
    Details = TidlDetails
    #: The Clip model is float between its Clips, so it differs from the simulation by the
    #: per-layer rounding it skips. Measured max over the eval sets: 4.6 steps (digits), 6.4
    #: (mbv2_digits); 16 leaves room for deeper models while a wrong range or weight grid
    #: (an output clipped or scaled off) still shows as tens to hundreds of steps.
    parity_tolerance_lsb = 16.0

    def available(self) -> Availability:
        return Availability.of_modules("onnx", "onnxruntime", "onnxscript", "qconvert_onnx",
                                       install="onnx onnxscript onnxruntime -e plugins/onnx")

    def runtime_version(self) -> str:
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__} (Clip model); TIDL simulated"

    def constraints(self, options: TidlOptions) -> QuantConstraints:
        from qconvert_tidl.constraints import tidl_constraints

        return tidl_constraints(options)

    def fast_types(self, options: TidlOptions) -> FastTypes:
        return FastTypes(f"TI {options.soc} (TIDL-RT, C7x/MMA)", "sym", weight_granularity="per_tensor",
                         why="TIDL-RT requantizes with power-of-two shifts of symmetric per-tensor scales; "
                         "per-channel weights only for depthwise convolutions")

    def emit(self, qmodel: QuantizedModel, out_dir: Path, options: TidlOptions) -> Artifact:
        from qconvert_tidl.emit import emit_tidl

        return emit_tidl(qmodel, out_dir, options, self.name)

    def run(self, artifact: Artifact, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        from qconvert_tidl.runtime import run_onnx

        return run_onnx(artifact.path, inputs)

    def extra_checks(self, qmodel: QuantizedModel, artifact: Artifact, options: TidlOptions,
                     ctx: CheckContext) -> ExtraChecks | None:
        from qconvert_tidl.predict import device_checks

        return device_checks(qmodel, artifact, options, ctx)
