"""Run the Clip models here: ONNX in onnxruntime, TFLite in ai-edge-litert. numpy only, no torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qconvert_onnx.runtime import run_onnx  # the Clip model runs as any ONNX model does

__all__ = ["run_onnx", "run_tflite", "tflite_available"]


def tflite_available() -> bool:
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def run_tflite(path: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run a static-batch-1 TFLite model sample by sample; inputs in signature order."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    ins, outs = interpreter.get_input_details(), interpreter.get_output_details()
    results: list[list[np.ndarray]] = [[] for _ in outs]
    for i in range(len(inputs[0])):
        for detail, x in zip(ins, inputs):
            interpreter.set_tensor(detail["index"], np.ascontiguousarray(_as_input(x[i : i + 1], detail["dtype"])))
        interpreter.invoke()
        for r, detail in zip(results, outs):
            r.append(interpreter.get_tensor(detail["index"]).copy())
    return [np.concatenate(r) for r in results]


def _as_input(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Integer inputs (token ids) in the width the converter chose: torch's int64 ids arrive as int32."""
    if np.issubdtype(x.dtype, np.integer) and np.issubdtype(dtype, np.integer) and x.dtype != dtype:
        info = np.iinfo(dtype)
        if x.size and (x.min() < info.min or x.max() > info.max):
            raise ValueError(f"input values {x.min()}..{x.max()} do not fit the TFLite model's {np.dtype(dtype).name} input")
        return x.astype(dtype)
    return x
