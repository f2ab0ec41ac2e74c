"""Latency of the ``pytorch`` artifact against the float model, both in torch, loaded as README.md tells users.

- ``.pt2`` (inductor): ``torch.export.load(...).module()`` and the float graph (``qmodel.captured.graph``,
  deep-copied: freezing rewrites the module it compiles) are each compiled by ``torch.compile`` with
  inductor's ``freezing`` and ``dynamic=False``, once per batch size (the int8 convolution lowering
  fails with a symbolic batch), and dynamo is reset after each batch size.
- ``.pt`` (quantized modules): ``torch.jit.load`` under the artifact's quantized engine, against the
  float graph in eager mode (TorchScript has no compiler to compare with).

Both run under ``torch.no_grad()`` on one intra-op thread (restored afterwards), timed in turn by
``qconvert.verify.timing``: on a shared machine two OpenMP threads spin against other load, which
made the tiny digits model's float graph take 144 ms instead of 0.4 ms (the tflite plugin and
``bench/edge_latency.py`` use one thread for the same reason).

Node counts are convolutions and linear layers only. ``.pt2``: those inductor's freezing passes
packed for oneDNN int8 kernels (its pattern-matcher counters while the int8 program compiled; None
where no pattern fired, since a renamed counter would look the same), the program's other conv/linear
ops being float. ``.pt``: torch.ao's quantized and dynamic quantized conv/linear modules, against the
float ``aten::`` conv/linear/matmul calls left in the TorchScript graph.
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from qconvert.targets import Artifact, Latency
from qconvert_pytorch.details import PytorchDetails
from qconvert_pytorch.engine import inductor_freezing, quantized_engine

if TYPE_CHECKING:
    from qconvert.targets import QuantizedModel

__all__ = ["THREADS", "measure_latency"]

_CONV = frozenset({"conv1d", "conv2d", "conv3d", "convolution", "_convolution", "conv_transpose1d", "conv_transpose2d",
                   "conv_transpose3d"})
_LINEAR = frozenset({"linear", "addmm", "mm", "bmm", "matmul"})
#: torch.ao (dynamic) quantized conv/linear module classes: the TorchScript artifact's int8 conv/linear layers.
_QUANTIZED_MODULES = frozenset({"Conv1d", "Conv2d", "Conv3d", "ConvReLU1d", "ConvReLU2d", "ConvReLU3d", "ConvTranspose1d",
                                "ConvTranspose2d", "ConvTranspose3d", "Linear", "LinearReLU"})
#: Inductor's freezing-pass counters: one per conv/linear weight packed for a oneDNN int8 kernel.
_PREPACK = {"conv": "qconv_weight_prepack_matcher_count", "linear": "qlinear_weight_prepack_matcher_count"}

Counts = tuple[int | None, int | None, tuple[str, ...]]
#: Intra-op threads for both models while timing (see the module docstring).
THREADS = 1




def _ms(int8: Any, flt: Any, inputs: tuple[torch.Tensor, ...], budget_s: float) -> dict[str, float]:
    from qconvert.targets import interleaved_ms

    return interleaved_ms({"int8": partial(int8, *inputs), "float": partial(flt, *inputs)}, budget_s)


def measure_latency(qmodel: QuantizedModel, artifact: Artifact, batch_sizes: tuple[int, ...], runtime: str,
                    budget_s: float = 1.0) -> Latency:
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if PytorchDetails.of(artifact).lowering == "inductor":
                ms, counts = _compiled(qmodel, artifact.path, batch_sizes, budget_s)
            else:
                ms, counts = _scripted(qmodel, artifact.path, PytorchDetails.of(artifact).backend, batch_sizes, budget_s)
    finally:
        torch.set_num_threads(threads)
    return Latency(f"{runtime}, {THREADS} thread(s)", batch_sizes, tuple(m["int8"] for m in ms), tuple(m["float"] for m in ms), *counts)


def _compiled(qmodel: QuantizedModel, path: Path, batch_sizes: tuple[int, ...], budget_s: float) -> tuple[list[dict[str, float]], Counts]:
    import torch.ao.quantization.fx._decomposed  # registers the quantize/dequantize ops of the graph
    from torch._dynamo.utils import counters

    ms: list[dict[str, float]] = []
    packed: Counter[str] | None = None
    try:
        with inductor_freezing():
            for b in batch_sizes:
                inputs = qmodel.example_inputs_at(b)
                int8 = torch.compile(torch.export.load(str(path)).module(), dynamic=False)
                flt = torch.compile(copy.deepcopy(qmodel.captured.graph), dynamic=False)
                before = Counter(counters["inductor"])
                int8(*inputs)  # compiles: the freezing passes run now
                if packed is None:
                    packed = Counter({k: counters["inductor"][v] - before[v] for k, v in _PREPACK.items()})
                ms.append(_ms(int8, flt, inputs, budget_s))
                torch._dynamo.reset()
    finally:
        torch._dynamo.reset()
    return ms, _program_counts(path, packed or Counter())


def _program_counts(path: Path, packed: Counter[str]) -> Counts:
    if not sum(packed.values()):
        return None, None, ()
    total: Counter[str] = Counter()
    for node in torch.export.load(str(path)).graph.nodes:
        name = getattr(getattr(node.target, "_overloadpacket", None), "__name__", "") if node.op == "call_function" else ""
        if name in _CONV:
            total["conv"] += 1
        elif name in _LINEAR:
            total["linear"] += 1
    floats = {k: max(total[k] - packed[k], 0) for k in _PREPACK}
    return sum(packed.values()), sum(floats.values()), tuple(sorted(k for k, v in floats.items() if v))


def _scripted(qmodel: QuantizedModel, path: Path, backend: str, batch_sizes: tuple[int, ...],
              budget_s: float) -> tuple[list[dict[str, float]], Counts]:
    with quantized_engine(backend), torch.no_grad():
        int8 = torch.jit.load(str(path))
        ms = [_ms(int8, qmodel.captured.graph, qmodel.example_inputs_at(b), budget_s) for b in batch_sizes]
    types = [m._c._type().qualified_name() for _, m in int8.named_modules()]
    quantized = [t for t in types if ".quantized." in t and t.rsplit(".", 1)[1] in _QUANTIZED_MODULES]
    floats = [k for k in _kinds(int8.graph.nodes()) if k.startswith("aten::") and k.removeprefix("aten::") in _CONV | _LINEAR]
    return ms, (len(quantized), len(floats), tuple(sorted({k.removeprefix("aten::") for k in floats})))


def _kinds(nodes: Any) -> list[str]:
    """Kinds of the nodes of a TorchScript graph, nested blocks included."""
    return [k for n in nodes for k in (n.kind(), *(k for b in n.blocks() for k in _kinds(b.nodes())))]
