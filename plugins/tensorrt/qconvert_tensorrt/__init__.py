"""qconvert target ``tensorrt``: ONNX with TensorRT's Q/DQ placement, plus the engine where TensorRT runs.

Where ``tensorrt`` and a GPU are present the engine is built (INT8 with FP16
fallback, dynamic batch profile, timing cache) and run for the parity check.
Elsewhere the folder holds the ONNX, ``build_engine.py`` and ``trtexec.sh``; the
ONNX is verified in onnxruntime and every report line says the engine was not built.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from qconvert.targets import Artifact, Availability, FastTypes, Placement, QuantConstraints, Target
from qconvert_tensorrt.constraints import TENSORRT_PLACEMENT, TensorRTConstraints
from qconvert_tensorrt.details import TensorRTDetails
from qconvert_tensorrt.options import TensorRTOptions

if TYPE_CHECKING:
    import numpy as np

    from qconvert.targets import Intermediates, QuantizedModel

__all__ = ["TENSORRT_PLACEMENT", "TensorRTOptions", "TensorRTTarget"]


class TensorRTTarget(Target[TensorRTOptions]):
    """Explicitly quantized ONNX for TensorRT; the engine itself where TensorRT and a GPU exist."""

    name = "tensorrt"
    build_cost = 0.6  # emit, verify and latency next to onnx's (the digits sample: see Target.build_cost)
    description = "ONNX Q/DQ placed for TensorRT; engine built where tensorrt + GPU exist, else ONNX verified in onnxruntime"
    Options = TensorRTOptions
    api_version = 1
    Details = TensorRTDetails
    # The logits stay float: a one-code rounding flip in an inner int8 tensor (float kernels sum in
    # another order than torch) moves them by more than half a step. Measured on digits: 1.61.
    parity_tolerance_lsb = 2.0

    def available(self) -> Availability:
        return Availability.of_modules("onnx", "onnxruntime", "qconvert_onnx", install="-e plugins/onnx onnxruntime")

    def runtime_version(self) -> str:
        import onnxruntime

        from qconvert_tensorrt.engine import engine_support

        support = engine_support()
        if support.ok:
            return f"TensorRT {support.version} (engine); onnxruntime {onnxruntime.__version__} (ONNX check)"
        return f"onnxruntime {onnxruntime.__version__} (ONNX only; TensorRT engine not built: {support.reason})"

    def constraints(self, options: TensorRTOptions) -> QuantConstraints:
        return TensorRTConstraints()

    def fast_types(self, options: TensorRTOptions) -> FastTypes:
        return FastTypes("NVIDIA GPU (TensorRT)", "sym",
                         why="TensorRT's int8 kernels take symmetric int8 activations and weights (zero point 0)")

    def placement(self, options: TensorRTOptions) -> Placement:
        return TENSORRT_PLACEMENT

    def emit(self, qmodel: QuantizedModel, out_dir: Path, options: TensorRTOptions) -> Artifact:
        from qconvert_tensorrt.emit import emit_tensorrt

        return emit_tensorrt(qmodel, out_dir, options, self.name)

    def run(self, artifact: Artifact, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        from qconvert_tensorrt.runtime import run_artifact

        return run_artifact(artifact, inputs)

    def run_with_intermediates(self, artifact: Artifact, inputs: dict[str, np.ndarray]) -> Intermediates | None:
        """The ONNX in onnxruntime exposes its quantized tensors; a built engine is checked end to end only."""
        from qconvert_onnx.intermediates import run_with_intermediates

        d = TensorRTDetails.of(artifact)
        if d.engine.built:
            return None
        return run_with_intermediates(artifact.directory / d.onnx, inputs, d.quantized_tensors)
