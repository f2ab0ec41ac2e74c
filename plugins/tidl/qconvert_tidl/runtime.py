"""Run the Clip models here: ONNX in onnxruntime, TFLite in ai-edge-litert. numpy only, no torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qconvert_onnx.runtime import run_onnx  # the Clip model runs as any ONNX model does

from qconvert.targets import fit_integer_input

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
            interpreter.set_tensor(detail["index"], np.ascontiguousarray(fit_integer_input(x[i : i + 1], detail["dtype"], "TFLite")))
        interpreter.invoke()
        for r, detail in zip(results, outs):
            r.append(interpreter.get_tensor(detail["index"]).copy())
    return [np.concatenate(r) for r in results]

