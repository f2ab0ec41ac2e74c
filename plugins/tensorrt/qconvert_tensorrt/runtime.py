"""Run a tensorrt artifact: the engine with TensorRT where one was built, else the ONNX in onnxruntime.

numpy, onnxruntime, and (for engines) tensorrt with cuda-python: no torch, so
``qconvert verify`` works on a deployment machine.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from qconvert_onnx.runtime import run_onnx

from qconvert.targets import Artifact
from qconvert_tensorrt.details import TensorRTDetails

__all__ = ["run_artifact", "run_engine"]


def run_artifact(artifact: Artifact, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    d = TensorRTDetails.of(artifact)
    if d.engine.built:
        return run_engine(artifact.directory / d.engine.file, inputs, artifact.output_names)
    return run_onnx(artifact.directory / d.onnx, inputs)


@lru_cache(maxsize=4)
def _engine(path: str, mtime: float) -> Any:
    import tensorrt as trt

    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(Path(path).read_bytes())
    if engine is None:
        raise RuntimeError(f"TensorRT cannot deserialize {path} (built for another GPU or TensorRT version?)")
    return engine


def _check(result: tuple[Any, ...]) -> Any:
    from qconvert_tensorrt.engine import cudart

    err, *rest = result
    if err != cudart().cudaError_t.cudaSuccess:
        raise RuntimeError(f"CUDA error {err}")
    return rest[0] if rest else None


def run_engine(path: Path, inputs: dict[str, np.ndarray], output_names: tuple[str, ...]) -> list[np.ndarray]:
    """One synchronous inference: copy inputs to the GPU, execute_async_v3, copy outputs back."""
    import tensorrt as trt

    from qconvert_tensorrt.engine import cudart

    rt = cudart()
    engine = _engine(str(path), path.stat().st_mtime)
    context = engine.create_execution_context()
    device: list[Any] = []
    outputs: dict[str, np.ndarray] = {}
    out_ptrs: dict[str, Any] = {}
    stream = _check(rt.cudaStreamCreate())
    try:
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        for name in (n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT):
            host = np.ascontiguousarray(inputs[name], dtype=trt.nptype(engine.get_tensor_dtype(name)))
            context.set_input_shape(name, host.shape)
            ptr = _check(rt.cudaMalloc(max(host.nbytes, 1)))
            device.append(ptr)
            _check(rt.cudaMemcpy(ptr, host.ctypes.data, host.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice))
            context.set_tensor_address(name, ptr)
        for name in (n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT):
            outputs[name] = np.empty(tuple(context.get_tensor_shape(name)), dtype=trt.nptype(engine.get_tensor_dtype(name)))
            out_ptrs[name] = _check(rt.cudaMalloc(max(outputs[name].nbytes, 1)))
            device.append(out_ptrs[name])
            context.set_tensor_address(name, out_ptrs[name])
        if not context.execute_async_v3(int(stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        _check(rt.cudaStreamSynchronize(stream))
        for name, host in outputs.items():
            _check(rt.cudaMemcpy(host.ctypes.data, out_ptrs[name], host.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost))
    finally:
        for ptr in device:
            rt.cudaFree(ptr)
        rt.cudaStreamDestroy(stream)
    return [outputs[n] for n in output_names]
