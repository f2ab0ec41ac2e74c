"""Latency of the full-integer .tflite against a float .tflite of the same model, in the same LiteRT interpreter.

The float model is the captured float graph converted by litert-torch (as ``bench/edge_latency.py``
does); both interpreters run with the same thread count, fed tensors of their own input type that
are prepared before timing (a device feeds int8 directly), and are timed in turn by
``qconvert.verify.timing``.

litert-torch lowers static shapes, so the artifact has a fixed batch (``targets.tflite.batch``).
A batch size is measured only where the interpreter can resize the artifact's input to it and
allocate its tensors (models with a RESHAPE to a constant shape cannot); when none of the requested
sizes works, the artifact's own batch is measured instead. ``Latency.batch_sizes`` lists what was
measured. The float model is converted at the first measured batch and resized, or converted again
where resizing fails.

Node counts come from the artifact's op list: a compute op whose first input is int8/uint8/int16
ran in integer arithmetic, one with a float input ran in float.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qconvert.targets import Artifact, Latency
from qconvert_tflite.runtime import _edges, _no_fd2, interpreter_class, quantize_input

if TYPE_CHECKING:
    from qconvert.targets import QuantizedModel

__all__ = ["COMPUTE_OPS", "THREADS", "count_int8_ops", "measure_latency"]

#: One interpreter thread for both models: figures on a shared machine stay comparable (see bench/edge_latency.py).
THREADS = 1
COMPUTE_OPS = frozenset({
    "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D", "FULLY_CONNECTED", "BATCH_MATMUL",
    "ADD", "SUB", "MUL", "DIV", "SQUARED_DIFFERENCE", "AVERAGE_POOL_2D", "MEAN", "SUM",
    "SOFTMAX", "LOGISTIC", "TANH", "HARD_SWISH", "GELU", "RSQRT", "L2_NORMALIZATION",
})
_INTEGER = (np.int8, np.uint8, np.int16)
_FLOAT = (np.float32, np.float16)


def _load(path: Path) -> Any:
    with _no_fd2():
        it = interpreter_class()(model_path=str(path), num_threads=THREADS)
        it.allocate_tensors()
    return it


def _at_batch(path: Path, batch: int) -> Any | None:
    """An interpreter of ``path`` with tensors allocated at ``batch``, or None where it cannot resize to it."""
    it = _load(path)
    with _no_fd2():
        details = it.get_input_details()
        if all(int(d["shape"][0]) == batch for d in details):
            return it
        for d in details:
            it.resize_tensor_input(d["index"], [batch, *(int(v) for v in d["shape"][1:])])
        try:
            it.allocate_tensors()  # XNNPACK or a kernel refuses the new shape, e.g. a RESHAPE to a constant shape
        except RuntimeError:
            return None
    return it


def _feeds(it: Any, qmodel: QuantizedModel, batch: int) -> list[tuple[int, np.ndarray]]:
    """The example inputs at ``batch`` in the interpreter's own types (int8 inputs quantized here, untimed)."""
    feeds = []
    for edge, t in zip(_edges(it.get_signature_runner().get_input_details()), qmodel.example_inputs_at(batch)):
        x = t.numpy()
        if np.issubdtype(edge.dtype, np.integer) and edge.scale > 0:
            x = quantize_input(x, edge.scale, edge.zero_point, edge.dtype)
        feeds.append((edge.index, np.ascontiguousarray(x, dtype=edge.dtype)))
    return feeds


def _invoke(it: Any, feeds: list[tuple[int, np.ndarray]]) -> None:
    for index, x in feeds:
        it.set_tensor(index, x)
    it.invoke()


def _convert_float(qmodel: QuantizedModel, batch: int, path: Path) -> bool:
    """Write the float .tflite of the captured float graph at ``batch``; False (with a warning) where litert-torch fails."""
    import torch

    from qconvert_tflite.export import quiet_litert

    sample = tuple(t[:1].repeat(batch, *([1] * (t.dim() - 1))) for t in qmodel.example_inputs)
    with quiet_litert():
        import litert_torch  # inside: its import prints oneDNN and deprecation lines

        try:
            with torch.no_grad():
                content = litert_torch.convert(copy.deepcopy(qmodel.captured.graph), sample).model_content()
        except Exception as e:  # noqa: BLE001 - litert-torch raises ValueError/RuntimeError/jax errors alike; warned below
            error = e
        else:
            path.write_bytes(content)
            return True
    warnings.warn(f"tflite latency not measured: litert-torch cannot convert the float model: {type(error).__name__}: "
                  f"{str(error).strip().splitlines()[0][:200] if str(error).strip() else ''}", stacklevel=2)
    return False


def count_int8_ops(path: Path) -> tuple[int | None, int | None, tuple[str, ...]]:
    """(integer compute ops, float compute ops, float op names) of a .tflite; None where the interpreter cannot list ops."""
    ops_details: Callable[[], list[dict[str, Any]]] | None = getattr(_load(path), "_get_ops_details", None)
    if ops_details is None:
        return None, None, ()
    int8, floats = 0, []
    for op in ops_details():
        types = op.get("operand_types")
        if op["op_name"] not in COMPUTE_OPS or not types:
            continue
        if types[0] in _INTEGER:
            int8 += 1
        elif types[0] in _FLOAT:
            floats.append(op["op_name"])
    return int8, len(floats), tuple(sorted(set(floats)))


def measure_latency(qmodel: QuantizedModel, artifact: Artifact, batch_sizes: tuple[int, ...], runtime: str,
                    budget_s: float = 1.0) -> Latency | None:
    native = int(_load(artifact.path).get_input_details()[0]["shape"][0])
    int8_at = {b: it for b in batch_sizes if (it := _at_batch(artifact.path, b)) is not None}
    if not int8_at:
        int8_at = {native: _at_batch(artifact.path, native)}
    int8_ms, float_ms = [], []
    with tempfile.TemporaryDirectory() as tmp:
        converted: list[Path] = []
        for b, q in int8_at.items():
            f = next((it for p in converted if (it := _at_batch(p, b)) is not None), None)
            if f is None:
                path = Path(tmp) / f"float_b{b}.tflite"
                if not _convert_float(qmodel, b, path):
                    return None
                converted.append(path)
                f = _at_batch(path, b)
            ms = _time(q, f, qmodel, b, budget_s)
            int8_ms.append(ms["int8"])
            float_ms.append(ms["float"])
    int8_nodes, float_nodes, float_ops = count_int8_ops(artifact.path)
    return Latency(f"{runtime}, {THREADS} thread(s)", tuple(int8_at), tuple(int8_ms), tuple(float_ms), int8_nodes, float_nodes, float_ops)


def _time(q: Any, f: Any, qmodel: QuantizedModel, batch: int, budget_s: float) -> dict[str, float]:
    from qconvert.targets import interleaved_ms

    calls = {"int8": partial(_invoke, q, _feeds(q, qmodel, batch)), "float": partial(_invoke, f, _feeds(f, qmodel, batch))}
    return interleaved_ms(calls, budget_s)
