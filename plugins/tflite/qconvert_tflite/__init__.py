"""qconvert target ``tflite``: full-integer int8 .tflite from the Q/DQ graph, run in LiteRT."""

from __future__ import annotations

from dataclasses import replace
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

from qconvert.targets import Artifact, Availability, FastTypes, Latency, QuantConstraints, Target
from qconvert_tflite.constraints import TFLITE_CONSTRAINTS
from qconvert_tflite.details import TfliteDetails
from qconvert_tflite.options import TFLiteOptions

if TYPE_CHECKING:
    import numpy as np

    from qconvert.targets import Intermediates, QuantizedModel

__all__ = ["TFLiteOptions", "TFLiteTarget"]


class TFLiteTarget(Target[TFLiteOptions]):
    """Full-integer int8 TFLite (litert-torch), verified in ai-edge-litert or tflite-runtime."""

    name = "tflite"
    build_cost = 1.7  # emit, verify and latency next to onnx's (the digits sample: see Target.build_cost)
    description = "full-integer int8 .tflite, verified in the LiteRT interpreter"
    Options = TFLiteOptions
    api_version = 1
    Details = TfliteDetails
    # Measured max |tflite - simulation| over every output: 1 step on digits and ResNet-18,
    # 2 on MobileNetV2. LiteRT's XNNPACK kernels requantize the exact int32 accumulator in
    # float32; the float simulation sums dequantized values in float32, so a step can flip per
    # layer near a tie and, rarely, two flips add up along a deep chain of requantizations.
    # Recipe requantize.arithmetic: fp32 simulates XNNPACK's conv/linear exactly (core.intarith).
    parity_tolerance_lsb = 2.0

    def available(self) -> Availability:
        # litert-torch takes ~10 s to import: check that it is installed, import only the interpreter.
        if find_spec("litert_torch") is None:
            return Availability(False, "litert-torch is not installed: pip install litert-torch ai-edge-litert")
        try:
            from qconvert_tflite.runtime import interpreter_class

            interpreter_class()
            import flatbuffers  # noqa: F401
            from ai_edge_litert import schema_py_generated  # noqa: F401
        except ImportError as e:
            return Availability(False, f"{e.name} is not installed: pip install ai-edge-litert flatbuffers")
        return Availability(True)

    def runtime_version(self) -> str:
        from qconvert_tflite.runtime import runtime_name

        return runtime_name()

    def constraints(self, options: TFLiteOptions) -> QuantConstraints:
        return TFLITE_CONSTRAINTS

    def fast_types(self, options: TFLiteOptions) -> FastTypes:
        return FastTypes(
            "Arm/x86 CPU (LiteRT, XNNPACK)", "asym_s",
            why="TFLite's int8 scheme: int8 activations with a zero point, int8 symmetric per-channel weights; "
            "its XNNPACK kernels and the NPU delegates run that form")

    def emit(self, qmodel: QuantizedModel, out_dir: Path, options: TFLiteOptions) -> Artifact:
        from qconvert_tflite.export import export_tflite
        from qconvert_tflite.intermediates import map_quantized_tensors

        artifact = export_tflite(qmodel, out_dir, options, self.name)
        # simulation quantize node -> .tflite tensor, for per-layer parity (qconvert_tflite.intermediates)
        mapping = map_quantized_tensors(artifact.path, qmodel, options.batch)
        return replace(artifact, details=TfliteDetails.of(artifact).model_copy(update={"quantized_tensors": mapping}))

    def run(self, artifact: Artifact, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        from qconvert_tflite.runtime import run_tflite

        return run_tflite(artifact.path, [inputs[n] for n in artifact.input_names])

    def run_with_intermediates(self, artifact: Artifact, inputs: dict[str, np.ndarray]) -> Intermediates | None:
        from qconvert_tflite.intermediates import run_with_intermediates

        mapping = TfliteDetails.of(artifact).quantized_tensors
        if mapping is None:
            return None
        return run_with_intermediates(artifact.path, [inputs[n] for n in artifact.input_names], mapping)

    def latency(self, qmodel: QuantizedModel, artifact: Artifact, options: TFLiteOptions,
                batch_sizes: tuple[int, ...]) -> Latency | None:
        """The .tflite vs a float .tflite of the same model in the same interpreter, at the batch sizes it can run."""
        from qconvert_tflite.latency import measure_latency

        return measure_latency(qmodel, artifact, batch_sizes, self.runtime_version())
