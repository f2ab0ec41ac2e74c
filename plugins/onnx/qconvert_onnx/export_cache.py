"""One ONNX export per distinct graph in a process: targets whose graphs are equal share it.

A six-target build exports ONNX up to six times (onnx, tensorrt, tvm's input, tidl's Clip model,
and the float model for the onnx and tvm latency baselines); ``torch.onnx.export`` is the most
expensive step of a small build (2-4 s each on digits). The onnx and tvm targets quantize the same
model the same way, and both latency baselines export the same float graph, so two of the six are
repeats. This cache keys an export by a fingerprint of everything the exporter reads: each node's
op, target and arguments (scales and zero points are literal arguments in a Q/DQ graph), every
tensor the graph holds (parameters, buffers, get_attr constants; by bytes), the example inputs'
shapes and dtypes, the input and output names and the translation table. Callers get their own
copy of the model (several rewrite it in place). At most ``MAX_ENTRIES`` models of at most ``MAX_BYTES`` are kept.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import onnx
import torch

__all__ = ["MAX_BYTES", "MAX_ENTRIES", "cached_export", "export_key", "stats"]

MAX_ENTRIES = 4
#: Larger models are not kept (a transformer's export would hold hundreds of MB per entry).
MAX_BYTES = 128 * 2**20
_CACHE: OrderedDict[str, bytes] = OrderedDict()
_STATS = {"hits": 0, "misses": 0}


def stats() -> dict[str, int]:
    """Hits and misses since the process started (tests and the bench read it)."""
    return dict(_STATS)


def _tensor_bytes(h: Any, t: torch.Tensor) -> None:
    t = t.detach()
    h.update(f"{tuple(t.shape)}{t.dtype}".encode())
    if t.is_quantized:
        t = t.int_repr()
    h.update(t.contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def _argument(h: Any, a: Any, index: dict[Any, int]) -> None:
    """A node argument: other nodes by position, tensors by their bytes (their repr elides values), the rest by repr."""
    if a in index if isinstance(a, torch.fx.Node) else False:
        h.update(f"%{index[a]},".encode())
    elif isinstance(a, torch.Tensor):
        _tensor_bytes(h, a)
    elif isinstance(a, (tuple, list)):
        h.update(b"(")
        for x in a:
            _argument(h, x, index)
        h.update(b")")
    else:
        h.update(f"{a!r},".encode())


def _attr(gm: torch.nn.Module, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def export_key(gm: torch.nn.Module, example: tuple[torch.Tensor, ...], names: tuple[Any, ...]) -> str | None:
    """A hash of what an export of ``gm`` at ``example`` with ``names`` depends on; None for a module
    that is not an FX graph (then nothing is cached)."""
    graph = getattr(gm, "graph", None)
    if graph is None or not hasattr(graph, "nodes"):
        return None
    h = hashlib.sha256()
    h.update(repr(names).encode())
    for t in example:
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
    index: dict[Any, int] = {}
    for n in graph.nodes:  # by position, not name: two quantize runs name their duplicated dequantize nodes differently
        index[n] = len(index)
        h.update(f"{n.op}|{n.target if n.op != 'placeholder' else n.name}|".encode())
        for a in (*n.args, *sorted(n.kwargs.items())):
            _argument(h, a, index)
        if n.op == "get_attr":
            value = _attr(gm, str(n.target))
            if isinstance(value, torch.Tensor):
                _tensor_bytes(h, value)
            elif isinstance(value, torch.nn.Module):
                for k, v in value.state_dict().items():
                    h.update(k.encode())
                    _tensor_bytes(h, v)
            else:
                h.update(repr(value).encode())
    for k, v in gm.state_dict().items():
        h.update(k.encode())
        _tensor_bytes(h, v)
    return h.hexdigest()


def cached_export(gm: torch.nn.Module, example: tuple[torch.Tensor, ...], names: tuple[Any, ...],
                  export: Callable[[], onnx.ModelProto]) -> onnx.ModelProto:
    """``export()``'s model, or a copy of the one exported earlier in this process for an equal graph."""
    key = export_key(gm, example, names)
    if key is not None and key in _CACHE:
        _STATS["hits"] += 1
        _CACHE.move_to_end(key)
        return onnx.load_from_string(_CACHE[key])
    model = export()
    _STATS["misses"] += 1
    if key is not None and model.ByteSize() <= MAX_BYTES:
        _CACHE[key] = model.SerializeToString()
        while len(_CACHE) > MAX_ENTRIES:
            _CACHE.popitem(last=False)
    return model
