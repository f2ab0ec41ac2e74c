"""qconvert target ``onnx``: ONNX QDQ exported from the Q/DQ graph, run in onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from qconvert.targets import Artifact, Availability, FastTypes, Latency, QuantConstraints, Target
from qconvert_onnx.details import OnnxDetails
from qconvert_onnx.options import OnnxOptions

if TYPE_CHECKING:
    import numpy as np

    from qconvert.targets import Intermediates, QuantizedModel

__all__ = ["OnnxOptions", "OnnxTarget", "onnxruntime_fast_types"]


def onnxruntime_fast_types(device: str) -> FastTypes:
    """onnxruntime's CPU int8 kernels: what they take on each CPU (also used by the tvm target on x86)."""
    if device == "x86_avx2":
        return FastTypes(
            "x86 CPU without VNNI (onnxruntime)", "asym_u",
            why="onnxruntime's U8S8 kernels without VNNI add pairs of uint8 x int8 products in saturating int16 "
            "(vpmaddubsw); 7-bit weights keep those sums exact, as onnxruntime's reduce_range does (not measured here: "
            "this machine has VNNI)")
    if device == "arm64":
        return FastTypes(
            "arm64 CPU (onnxruntime)", "asym_s",
            why="ARM's int8 dot-product instructions multiply signed int8 by signed int8, and onnxruntime quantizes "
            "QDQ models S8S8 by default there (not measured here: this machine is x86)")
    return FastTypes(
        "x86 CPU (onnxruntime)", "asym_u",
        why="onnxruntime's x86 int8 convolution and GEMM kernels take uint8 activations with int8 weights (U8S8); "
        "ResNet-18 with int8 activations (S8S8) ran 1.2x fp32 here, U8S8 3.4x ('make bench', section speed)")


class OnnxTarget(Target[OnnxOptions]):
    """ONNX QDQ (opset 18) for onnxruntime and any QDQ-aware runtime."""

    name = "onnx"
    description = "ONNX QDQ model, verified in onnxruntime"
    Options = OnnxOptions
    api_version = 1
    Details = OnnxDetails
    parity_tolerance_lsb = 1.0

    def available(self) -> Availability:
        return Availability.of_modules("onnx", "onnxruntime", "onnxscript", install="onnx onnxscript onnxruntime")

    def runtime_version(self) -> str:
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}"

    def constraints(self, options: OnnxOptions) -> QuantConstraints:
        # 16-bit Q/DQ (int16/uint16) is exported at opset 21 (qconvert_onnx.export.with_wide_qdq_opset). Dynamic quantization:
        # DynamicQuantizeLinear + MatMulInteger for Linear (qconvert_onnx.dynamic), int8 rows behind
        # a DequantizeLinear for Embedding; LSTM/GRU stay float (see README).
        weight_bits = 7 if options.device == "x86_avx2" else 16  # see onnxruntime_fast_types
        return QuantConstraints(
            max_activation_bits=16, max_weight_bits=weight_bits, dynamic_ops=frozenset({"linear", "embedding"}),
            requantize_arithmetic="fp32",  # MLAS requantizes the int32 sum in float32, rounding half to even
            partial_schemes=frozenset({"weights"}),
            partial_refusal="onnxruntime quantizes the float weight of a conv/gemm fed by a DequantizeLinear itself "
            "(its WeightBiasQuantization pass), so it would not run what the simulation runs (6 steps off on digits)")

    def fast_types(self, options: OnnxOptions) -> FastTypes:
        return onnxruntime_fast_types(options.device)

    def emit(self, qmodel: QuantizedModel, out_dir: Path, options: OnnxOptions) -> Artifact:
        from qconvert_onnx.export import export_qdq

        return export_qdq(qmodel, out_dir, options, self.name)

    def run(self, artifact: Artifact, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        from qconvert_onnx.runtime import run_onnx

        return run_onnx(artifact.path, inputs)

    def run_with_intermediates(self, artifact: Artifact, inputs: dict[str, np.ndarray]) -> Intermediates | None:
        from qconvert_onnx.intermediates import run_with_intermediates

        return run_with_intermediates(artifact.path, inputs, OnnxDetails.of(artifact).quantized_tensors)

    def latency(self, qmodel: QuantizedModel, artifact: Artifact, options: OnnxOptions,
                batch_sizes: tuple[int, ...]) -> Latency | None:
        from qconvert_onnx.export import export_float_model
        from qconvert_onnx.latency import count_int8_nodes, session_ms

        models = {"int8": str(artifact.path), "float": export_float_model(qmodel).SerializeToString()}
        int8_ms, float_ms = [], []
        for b in batch_sizes:
            feeds = {n: t.numpy() for n, t in zip(artifact.input_names, qmodel.example_inputs_at(b))}
            ms = session_ms(models, feeds)
            int8_ms.append(ms["int8"])
            float_ms.append(ms["float"])
        int8_nodes, float_nodes, float_ops = count_int8_nodes(str(artifact.path))
        return Latency(self.runtime_version(), batch_sizes, tuple(int8_ms), tuple(float_ms), int8_nodes, float_nodes, float_ops)
