"""qconvert target ``tvm``: the ONNX QDQ artifact compiled with TVM Relax, run in the Relax VM."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

from qconvert.targets import Artifact, Availability, FastTypes, Latency, QuantConstraints, Target
from qconvert_tvm.details import TvmDetails
from qconvert_tvm.options import TvmOptions

if TYPE_CHECKING:
    import numpy as np

    from qconvert.targets import QuantizedModel

__all__ = ["TvmOptions", "TvmTarget"]


class TvmTarget(Target[TvmOptions]):
    """A TVM Relax library for an LLVM CPU target, built from qconvert_onnx's QDQ export."""

    name = "tvm"
    build_cost = 3.0  # emit, verify and latency next to onnx's (the digits sample: see Target.build_cost)
    description = "ONNX QDQ compiled by TVM Relax (llvm), verified in the Relax VM in a fresh process"
    Options = TvmOptions
    api_version = 1
    Details = TvmDetails
    # The Relax ONNX frontend keeps QuantizeLinear/DequantizeLinear and runs the ops between
    # them in float32, like onnxruntime's QDQ path: measured max 1 step on digits and ResNet-18
    # (float accumulation order decides a rounding tie now and then), never 2.
    parity_tolerance_lsb = 1.0

    def available(self) -> Availability:
        # Importing tvm takes seconds; `qconvert targets` only checks it is installed. A broken
        # install then fails at emit with TVM's own error.
        for module, dist in (("tvm", "apache-tvm"), ("tvm_ffi", "apache-tvm-ffi"), ("onnx", "onnx"), ("qconvert_onnx", "qconvert-onnx")):
            if find_spec(module) is None:
                return Availability(False, f"{dist} is not installed: pip install 'apache-tvm>=0.26,<0.27' and plugins/onnx")
        return Availability(True)

    def runtime_version(self) -> str:
        try:
            return f"tvm {version('apache-tvm')}"
        except PackageNotFoundError:
            return "tvm (unknown version)"

    def warm_up(self) -> Callable[[], object] | None:
        # The fresh process verification runs the library in spends about 0.6 s importing TVM before the first run:
        # started now, it does that while the build captures (qconvert_tvm.runtime.prestart). A target that is not
        # runnable here (cross-compiled) leaves it unused; it ends with the build.
        from qconvert_tvm.runtime import prestart

        return prestart

    def constraints(self, options: TvmOptions) -> QuantConstraints:
        from qconvert_onnx import OnnxTarget

        # The artifact is built from the ONNX QDQ export, so the ONNX target's limits apply; 16-bit Q/DQ
        # (opset 21) has not been run through TVM's ONNX frontend here, so it stays at 8 bits.
        return replace(OnnxTarget().constraints(OnnxTarget.Options()), max_activation_bits=8, max_weight_bits=8,
                       partial_schemes=frozenset(), partial_refusal="not run through TVM's ONNX frontend here")

    def fast_types(self, options: TvmOptions) -> FastTypes:
        from qconvert_onnx import onnxruntime_fast_types

        # The library is compiled from the onnx target's QDQ model: the same CPU, the same types.
        arm = any(k in options.target for k in ("aarch64", "arm"))
        onnx_types = onnxruntime_fast_types("arm64" if arm else "x86")
        # Untuned Relax (no MetaSchedule) runs the QDQ library no faster than its float build ('make bench',
        # edge_latency): there is no speed to trade, so the default keeps the accurate placement.
        return FastTypes(f"{'arm64' if arm else 'x86'} CPU (TVM llvm)", onnx_types.activation_mode, default="accuracy",
                         why=f"compiled from the onnx target's QDQ model for the same CPU: {onnx_types.why}; untuned TVM "
                         "ran int8 no faster than float here, so its default is accuracy")

    def emit(self, qmodel: QuantizedModel, out_dir: Path, options: TvmOptions) -> Artifact:
        from qconvert_tvm.export import export_tvm

        return export_tvm(qmodel, out_dir, options, self.name)

    def run(self, artifact: Artifact, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        from qconvert_tvm.runtime import run_tvm

        return run_tvm(artifact.path, [inputs[n] for n in artifact.input_names], TvmDetails.of(artifact).static_batch)

    def latency(self, qmodel: QuantizedModel, artifact: Artifact, options: TvmOptions,
                batch_sizes: tuple[int, ...]) -> Latency | None:
        """The library vs the float model built the same way, in the Relax VM; None for a library not built for this host."""
        from qconvert_tvm.latency import measure_latency

        return measure_latency(qmodel, artifact, options, batch_sizes, self.runtime_version())
