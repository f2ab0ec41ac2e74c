"""qconvert target ``onnx``: ONNX QDQ exported from the Q/DQ graph, run in onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from qconvert.targets.base import Artifact, Availability, Latency, Target, TargetOptions
from qconvert.targets.constraints import QuantConstraints
from qconvert_onnx.options import OnnxOptions

if TYPE_CHECKING:
    import numpy as np

    from qconvert.core.quantize import QuantizedModel

__all__ = ["OnnxTarget", "OnnxOptions"]


class OnnxTarget(Target):
    """ONNX QDQ (opset 18) for onnxruntime and any QDQ-aware runtime."""

    name = "onnx"
    description = "ONNX QDQ model, verified in onnxruntime"
    Options = OnnxOptions
    parity_tolerance_lsb = 1.0

    def available(self) -> Availability:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError as e:
            return Availability(False, f"{e.name} is not installed: pip install onnx onnxscript onnxruntime")
        return Availability(True)

    def runtime_version(self) -> str:
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}"

    def constraints(self, options: TargetOptions) -> QuantConstraints:
        # opset 18 Q/DQ carries int8/uint8 only; int16 needs opset 21. Dynamic quantization:
        # DynamicQuantizeLinear + MatMulInteger for Linear (qconvert_onnx.dynamic), int8 rows behind
        # a DequantizeLinear for Embedding; LSTM/GRU stay float (see README).
        return QuantConstraints(max_activation_bits=8, max_weight_bits=8, dynamic_ops=frozenset({"linear", "embedding"}))

    def emit(self, qmodel: QuantizedModel, out_dir: Path, options: TargetOptions) -> Artifact:
        from qconvert_onnx.export import export_qdq

        assert isinstance(options, OnnxOptions)
        return export_qdq(qmodel, out_dir, options, self.name)

    def run(self, artifact: Artifact, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        from qconvert_onnx.runtime import run_onnx

        return run_onnx(artifact.path, inputs)

    def latency(self, qmodel: QuantizedModel, artifact: Artifact, options: TargetOptions,
                batch_sizes: tuple[int, ...]) -> Latency | None:
        import numpy as np

        from qconvert_onnx.export import export_float_model
        from qconvert_onnx.latency import count_int8_nodes, median_ms

        float_bytes = export_float_model(qmodel).SerializeToString()
        int8_ms, float_ms = [], []
        for b in batch_sizes:
            feeds = {n: _example(t, b) for n, t in zip(artifact.input_names, qmodel.example_inputs)}
            int8_ms.append(median_ms(str(artifact.path), feeds))
            float_ms.append(median_ms(float_bytes, feeds))
        int8_nodes, float_nodes, float_ops = count_int8_nodes(str(artifact.path))
        _ = np
        return Latency(self.runtime_version(), batch_sizes, tuple(int8_ms), tuple(float_ms), int8_nodes, float_nodes, float_ops)


def _example(t: object, batch: int) -> np.ndarray:
    """A batch of inputs shaped and typed like the example input (values do not matter for timing)."""
    import numpy as np

    arr = t.numpy()  # type: ignore[attr-defined]
    reps = (batch + arr.shape[0] - 1) // arr.shape[0]
    return np.ascontiguousarray(np.concatenate([arr] * reps)[:batch])
