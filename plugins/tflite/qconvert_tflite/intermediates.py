"""LiteRT's own quantized intermediate tensors, for per-layer parity.

litert-torch fuses each dequantize -> op -> quantize group into one int8 TFLite op, so
the activation a quantize node produced is that op's output tensor, in NHWC where the
simulation is NCHW, and some (a flatten after a mean) are fused away. At export the
simulation's quantize nodes are paired with the int8 tensors of the flatbuffer on the
same grid (scale, zero point) whose values on the example input agree with the
simulation of that layer fed the tensors paired before it (as is, NHWC, or reshaped). At verify time the
interpreter runs with ``experimental_preserve_all_tensors``
(the same kernels and XNNPACK delegate as ``run``; the tests check its outputs equal
``run``'s) and the mapped tensors are read after each invoke.

``run_with_intermediates`` needs numpy and the interpreter only (no torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ai_edge_litert import schema_py_generated as fb

from qconvert.targets import Intermediates, RuntimeTensor
from qconvert_tflite.details import TensorSlot
from qconvert_tflite.narrow import bounded_inputs
from qconvert_tflite.runtime import _invoke, _Loaded, load

if TYPE_CHECKING:
    from qconvert.targets import QuantizedModel

__all__ = ["activation_tensors", "map_quantized_tensors", "run_with_intermediates"]

_INT = {fb.TensorType.INT8: np.int8, fb.TensorType.UINT8: np.uint8, fb.TensorType.INT16: np.int16}


@dataclass(frozen=True)
class Slot:
    """One per-tensor quantized activation of the flatbuffer."""

    index: int
    name: str
    shape: tuple[int, ...]
    scale: float
    zero_point: int
    dtype: type


def activation_tensors(buf: bytes) -> list[Slot]:
    """Per-tensor quantized integer activations in execution order: the inputs, then each op's outputs."""
    model = fb.ModelT.InitFromPackedBuf(buf, 0)
    sg = model.subgraphs[0]
    order = [int(i) for i in sg.inputs] + [int(i) for op in sg.operators for i in op.outputs if i >= 0]
    raw = bounded_inputs(model)  # a sub-8-bit tensor before its bound: the simulation's value is the bounded one
    slots = []
    for i in dict.fromkeys(order):
        if i in raw:
            continue
        t = sg.tensors[i]
        q = t.quantization
        if t.type not in _INT or q is None or q.scale is None or len(q.scale) != 1 or float(q.scale[0]) == 0.0:
            continue
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        zp = int(q.zeroPoint[0]) if q.zeroPoint is not None and len(q.zeroPoint) else 0
        slots.append(Slot(i, name, tuple(int(v) for v in t.shape), float(q.scale[0]), zp, _INT[t.type]))
    return slots


def _layouts(runtime: tuple[int, ...], sim: tuple[int, ...]) -> list[tuple[tuple[int, ...] | None, bool]]:
    """(permutation, reshape) ways to read a runtime tensor (batch excluded) as the simulation's."""
    out: list[tuple[tuple[int, ...] | None, bool]] = []
    if runtime == sim:
        out.append((None, False))
    if len(runtime) == 3 and (runtime[2], runtime[0], runtime[1]) == sim:
        out.append(((0, 3, 1, 2), False))
    if not out and int(np.prod(runtime)) == int(np.prod(sim)):
        out.append((None, True))
    return out


def _read(values: np.ndarray, perm: tuple[int, ...] | None, reshape: bool, shape: tuple[int, ...]) -> np.ndarray:
    if perm is not None:
        values = values.transpose(perm)
    return values.reshape(values.shape[0], *shape) if reshape else values


#: A tensor is the one a quantize node became when this fraction of its values is within one step
#: of the simulation fed the tensors already paired (a wrong pairing is off almost everywhere).
MATCH_FRACTION = 0.99


def map_quantized_tensors(path: Path, qmodel: QuantizedModel, batch: int) -> dict[str, TensorSlot]:
    """Simulation quantize node -> its ``TensorSlot`` (tensor, index, perm, reshape, shape) in the .tflite at ``path``.

    One run on the example input: the simulation runs with each quantize node already paired
    replaced by the runtime's tensor, so each candidate is compared with the simulation of its
    own layer fed the runtime's inputs; candidates are tried in execution order from the last
    pairing on, on the same grid, in each layout the shapes allow.
    """
    import torch
    from torch.fx import Interpreter

    qt = torch.ops.quantized_decomposed.quantize_per_tensor.default
    sample = tuple(t[:1].repeat(batch, *([1] * (t.dim() - 1))) for t in qmodel.example_inputs)
    slots = activation_tensors(path.read_bytes())
    m = _loaded(str(path), path.stat().st_mtime)
    _invoke(m, [t.numpy() for t in sample])
    values = {s.index: m.interpreter.get_tensor(s.index).astype(np.int32) for s in slots}
    mapping: dict[str, TensorSlot] = {}
    state = {"at": 0}
    used: set[int] = set()

    def pair(name: str, scale: float, zp: int, want: np.ndarray) -> np.ndarray | None:
        order = list(range(state["at"], len(slots))) + list(range(state["at"]))
        for i in order:
            s = slots[i]
            if i in used or np.float32(s.scale) != np.float32(scale) or s.zero_point != zp:
                continue
            for perm, reshape in _layouts(s.shape[1:], tuple(want.shape[1:])):
                got = _read(values[s.index], perm, reshape, tuple(want.shape[1:]))
                if np.mean(np.abs(got - want) <= 1) >= MATCH_FRACTION:
                    mapping[name] = TensorSlot(tensor=s.name, index=s.index, perm=list(perm) if perm else None, reshape=reshape,
                                               shape=list(want.shape[1:]))
                    used.add(i)
                    state["at"] = i + 1
                    return got
        return None

    class _Pairing(Interpreter):
        def run_node(self, node: Any) -> Any:
            out = super().run_node(node)
            if node.target != qt:
                return out
            got = pair(node.name, float(node.args[1]), int(node.args[2]), out.numpy().astype(np.int32))
            return out if got is None else torch.from_numpy(got).to(out.dtype)

    with torch.no_grad():
        _Pairing(qmodel.graph).run(*sample)
    return mapping


@lru_cache(maxsize=2)
def _loaded(path: str, mtime: float) -> _Loaded:
    return load(Path(path), preserve_all_tensors=True)


def run_with_intermediates(path: Path, arrays: list[np.ndarray], mapping: Mapping[str, TensorSlot]) -> Intermediates:
    """Run ``path`` in chunks of its fixed batch (as ``run``), reading the mapped tensors after each invoke."""
    m = _loaded(str(path), path.stat().st_mtime)
    slots = {s.index: s for s in activation_tensors(path.read_bytes())}
    present = {node: e for node, e in mapping.items() if e.index in slots and slots[e.index].name == e.tensor}
    batch, n = m.inputs[0].shape[0], arrays[0].shape[0]
    outs: list[list[np.ndarray]] = []
    parts: dict[str, list[np.ndarray]] = {node: [] for node in present}
    for start in range(0, n, batch):
        part = [a[start : start + batch] for a in arrays]
        short = batch - part[0].shape[0]
        if short:
            part = [np.concatenate([p, np.zeros((short, *p.shape[1:]), p.dtype)]) for p in part]
        outs.append([o[: batch - short] for o in _invoke(m, part)])
        for node, e in present.items():
            t = m.interpreter.get_tensor(e.index)
            # axis 0 is the batch, or (after a reshape that folds it in) batch-major rows of it
            parts[node].append((t[: t.shape[0] * (batch - short) // batch] if short else t).copy())
    tensors = {}
    for node, e in present.items():
        s = slots[e.index]
        values = _read(np.concatenate(parts[node]), tuple(e.perm) if e.perm else None, e.reshape, tuple(e.shape))
        tensors[node] = RuntimeTensor(s.name, values, s.scale, s.zero_point)
    outputs = [np.concatenate([c[i] for c in outs]) for i in range(len(m.outputs))]
    return Intermediates(outputs, tensors, tuple(node for node in mapping if node not in present))
