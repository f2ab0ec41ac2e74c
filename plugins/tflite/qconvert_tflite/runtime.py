"""Run a .tflite artifact in the LiteRT interpreter: numpy and the interpreter only (no torch).

``ai-edge-litert`` is preferred; ``tflite-runtime`` (the older package many boards
ship) has the same ``Interpreter`` API and is used when it is what is installed.
Inputs and outputs are float: an int8 edge is quantized with the model's own
scale and zero point, exactly as a device feeding raw int8 would do it.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from qconvert.targets import fit_integer_input

__all__ = ["dequantize_output", "interpreter_class", "load", "quantize_input", "run_loaded", "run_tflite", "runtime_name"]


def interpreter_class() -> Any:
    """LiteRT's ``Interpreter``, or tflite-runtime's; ImportError when neither is installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tflite_runtime.interpreter import Interpreter
    return Interpreter


def runtime_name() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("ai-edge-litert", "tflite-runtime"):
        try:
            return f"{dist} {version(dist)}"
        except PackageNotFoundError:
            continue
    return "none"


@dataclass(frozen=True)
class _Edge:
    index: int
    dtype: Any
    shape: tuple[int, ...]
    scale: float
    zero_point: int


@dataclass(frozen=True)
class _Loaded:
    interpreter: Any
    inputs: tuple[_Edge, ...]
    outputs: tuple[_Edge, ...]


def _edges(details: dict[str, dict[str, Any]]) -> tuple[_Edge, ...]:
    # Signature names are args_0, args_1, ... and output_0, ...: sort by their position.
    ordered = sorted(details.items(), key=lambda kv: int(kv[0].rsplit("_", 1)[-1]) if kv[0].rsplit("_", 1)[-1].isdigit() else 0)
    return tuple(_Edge(d["index"], d["dtype"], tuple(int(v) for v in d["shape"]), float(d["quantization"][0]),
                       int(d["quantization"][1])) for _, d in ordered)


@contextlib.contextmanager
def _no_fd2() -> Iterator[None]:
    """The interpreter announces its XNNPACK delegate on fd 2; keep the CLI output clean."""
    saved = os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def load(path: Path, num_threads: int | None = None, preserve_all_tensors: bool = False) -> _Loaded:
    """An interpreter with tensors allocated, and its inputs/outputs in graph order.

    ``preserve_all_tensors`` keeps every intermediate tensor readable after ``invoke``
    (same kernels and delegate; more memory), for per-layer parity.
    """
    with _no_fd2(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LiteRT warns that preserving tensors is for debugging
        it = interpreter_class()(model_path=str(path), num_threads=num_threads,
                                 experimental_preserve_all_tensors=preserve_all_tensors)
        it.allocate_tensors()
    runner = it.get_signature_runner()
    return _Loaded(it, _edges(runner.get_input_details()), _edges(runner.get_output_details()))


@lru_cache(maxsize=4)
def _cached(path: str, mtime: float) -> _Loaded:
    return load(Path(path))


def quantize_input(x: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    """Float to the model's integer input: round half to even, as the torch simulation does."""
    info = np.iinfo(dtype)
    return np.clip(np.round(x / np.float32(scale)) + zero_point, info.min, info.max).astype(dtype)


def dequantize_output(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


def _quantized(edge: _Edge) -> bool:
    """An int8/int16 edge carrying real numbers; an integer edge with no scale (token ids) carries integers."""
    return bool(np.issubdtype(edge.dtype, np.integer) and edge.scale > 0)


def _invoke(m: _Loaded, arrays: list[np.ndarray]) -> list[np.ndarray]:
    for edge, a in zip(m.inputs, arrays):
        if _quantized(edge) and not np.issubdtype(np.asarray(a).dtype, np.integer):
            a = quantize_input(a, edge.scale, edge.zero_point, edge.dtype)
        else:
            a = fit_integer_input(np.asarray(a), edge.dtype, "TFLite")
        m.interpreter.set_tensor(edge.index, np.ascontiguousarray(a, dtype=edge.dtype))
    m.interpreter.invoke()
    outs = []
    for edge in m.outputs:
        o = m.interpreter.get_tensor(edge.index)
        outs.append(dequantize_output(o, edge.scale, edge.zero_point) if _quantized(edge) else o.copy())
    return outs


def run_loaded(m: _Loaded, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Run any number of samples through a fixed-batch model, in chunks padded with zeros."""
    batch, n = m.inputs[0].shape[0], arrays[0].shape[0]
    chunks: list[list[np.ndarray]] = []
    for start in range(0, n, batch):
        part = [a[start : start + batch] for a in arrays]
        short = batch - part[0].shape[0]
        if short:
            part = [np.concatenate([p, np.zeros((short, *p.shape[1:]), p.dtype)]) for p in part]
        outs = _invoke(m, part)
        chunks.append([o[: batch - short] for o in outs])
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(m.outputs))]


def run_tflite(path: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return run_loaded(_cached(str(path), path.stat().st_mtime), inputs)
