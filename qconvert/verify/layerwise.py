"""Per-layer error of a quantized model: SQNR of every quantized activation against float,
and for the worst ones the calibration histogram with the clip range that was chosen.

Uses torch (it runs the float graph and the Q/DQ simulation side by side), so unlike
``metrics`` it is never imported by ``qconvert verify``. The quantized value of an
activation ``K`` is the dequantize that follows ``K``'s quantize in the Q/DQ graph; its
float value is ``K`` in the captured graph, or the BatchNorm right after ``K``, which
the quantized graph folded into it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.fx import GraphModule, Interpreter, Node

from qconvert.core.quantize import QuantizedModel
from qconvert.core.ranges import choose_range
from qconvert.core.stats import StatsSet, TensorStats
from qconvert.io.data import Dataset
from qconvert.verify.chunks import ChunkSizer
from qconvert.verify.metrics import CompareAccumulator
from qconvert.verify.report_schema import HistBins, LayerHistogram, Layers, LayerSqnr

__all__ = ["layer_report", "layer_reports", "rebin"]

#: Samples run through both graphs (enough for a stable SQNR, cheap on big models).
LAYER_SAMPLES = 256
WORST_HISTOGRAMS = 4
HIST_BARS = 64

_Q = {torch.ops.quantized_decomposed.quantize_per_tensor.default, torch.ops.quantized_decomposed.quantize_per_tensor.tensor}
_DQ = {torch.ops.quantized_decomposed.dequantize_per_tensor.default, torch.ops.quantized_decomposed.dequantize_per_tensor.tensor}
_BN = {torch.ops.aten.batch_norm.default, torch.ops.aten._native_batch_norm_legit_no_training.default}


@dataclass(frozen=True)
class _Probe:
    """Where to read one activation in the float graph and in the Q/DQ graph."""

    key: str
    module: str
    float_node: str
    quant_node: str
    grid: tuple[float, float]


def layer_report(qmodel: QuantizedModel, stats: StatsSet, data: Dataset, batch_size: int,
                 limit: int = LAYER_SAMPLES, worst: int = WORST_HISTOGRAMS) -> Layers:
    """``layers`` (every quantized activation, worst SQNR first) and ``histograms`` (the worst few)."""
    return layer_reports({"": qmodel}, stats, data, batch_size, limit, worst)[""]


def layer_reports(qmodels: Mapping[str, QuantizedModel], stats: StatsSet, data: Dataset, batch_size: int,
                  limit: int = LAYER_SAMPLES, worst: int = WORST_HISTOGRAMS) -> dict[str, Layers]:
    """``layer_report`` of several Q/DQ models of one capture (one per target), with one float graph pass for all."""
    if not qmodels:
        return {}
    probes = {name: _probes(qm) for name, qm in qmodels.items()}
    acc = {name: {p.key: CompareAccumulator(classifier=False) for p in ps} for name, ps in probes.items()}
    captured = next(iter(qmodels.values())).captured.graph
    samples = 0
    sizer = ChunkSizer()
    with torch.no_grad():
        for b in data.batches(batch_size, limit):
            for chunk in sizer.chunks(b.inputs):
                inputs = tuple(torch.from_numpy(np.array(a)) for a in chunk)
                ref = _record(captured, inputs, {p.float_node for ps in probes.values() for p in ps})
                recorded = _nbytes(ref)
                for name, qm in qmodels.items():
                    got = _record(qm.graph, inputs, {p.quant_node for p in probes[name]})
                    recorded += _nbytes(got)
                    for p in probes[name]:
                        acc[name][p.key].update(ref[p.float_node].numpy(), got[p.quant_node].numpy())
                    del got
                del ref
                sizer.observed(recorded, len(inputs[0]))
                samples += len(inputs[0])
    return {name: _rows(qm, stats, probes[name], acc[name], samples, worst) for name, qm in qmodels.items()}


def _nbytes(values: Mapping[str, torch.Tensor]) -> int:
    return sum(v.numel() * v.element_size() for v in values.values() if isinstance(v, torch.Tensor))


def _rows(qmodel: QuantizedModel, stats: StatsSet, probes: list[_Probe], acc: dict[str, CompareAccumulator], samples: int,
          worst: int) -> Layers:
    rows = [LayerSqnr(key=p.key, module=p.module, sqnr_db=acc[p.key].result().sqnr_db) for p in probes]
    rows.sort(key=lambda r: _order(r.sqnr_db))
    by_key = {p.key: p for p in probes}
    hists = [_histogram(stats.tensors[r.key], qmodel, by_key[r.key]) for r in rows if r.key in stats.tensors][:worst]
    return Layers(samples=samples, layers=rows, histograms=hists)


def _order(sqnr: float | None) -> float:
    return -math.inf if sqnr is None or math.isnan(sqnr) else sqnr


def _probes(qmodel: QuantizedModel) -> list[_Probe]:
    float_nodes = {n.name: n for n in qmodel.captured.graph.graph.nodes}
    quant_nodes = {n.name: n for n in qmodel.graph.graph.nodes}
    probes = []
    for key, tq in qmodel.decisions.items():
        if tq.role != "activation" or tq.dynamic or key not in float_nodes or key not in quant_nodes:
            continue
        q = next((u for u in quant_nodes[key].users if u.target in _Q), None)
        dq = next((u for u in q.users if u.target in _DQ), None) if q is not None else None
        if q is None or dq is None:
            continue
        scale, zp, qmin, qmax = (float(a) if not isinstance(a, Node) else math.nan for a in q.args[1:5])
        probes.append(_Probe(key, tq.module, _after_batchnorm(float_nodes[key]).name, dq.name,
                             ((qmin - zp) * scale, (qmax - zp) * scale)))
    return probes


def _after_batchnorm(node: Node) -> Node:
    """The node whose value the quantized graph holds at ``node``: past a BatchNorm it folded away."""
    users = list(node.users)
    if len(users) != 1 or users[0].target not in _BN:
        return node
    bn = users[0]
    if bn.target == torch.ops.aten.batch_norm.default:
        return bn
    return next((u for u in bn.users if u.args[1:] == (0,)), bn)  # getitem(bn, 0)


class _Recorder(Interpreter):
    def __init__(self, gm: GraphModule, names: set[str]) -> None:
        super().__init__(gm)
        self.names = names
        self.values: dict[str, torch.Tensor] = {}

    def run_node(self, n: Node) -> Any:
        out = super().run_node(n)
        if n.name in self.names:
            self.values[n.name] = out
        return out


def _record(gm: GraphModule, inputs: tuple[torch.Tensor, ...], names: set[str]) -> dict[str, torch.Tensor]:
    r = _Recorder(gm, names)
    r.run(*inputs)
    return r.values


def _histogram(s: TensorStats, qmodel: QuantizedModel, p: _Probe) -> LayerHistogram:
    clip = choose_range(s, qmodel.decisions[p.key], qmodel.recipe.calibration)
    lo, hi, counts = rebin(s.hist, s.hist_range, (min(clip[0], s.min), max(clip[1], s.max)))
    return LayerHistogram(key=p.key, module=p.module, method=qmodel.decisions[p.key].method, clip=list(clip), grid=list(p.grid),
                          observed=[s.min, s.max], bins=HistBins(lo=lo, hi=hi, counts=counts))


def rebin(hist: np.ndarray, hist_range: float, span: tuple[float, float], bars: int = HIST_BARS) -> tuple[float, float, list[int]]:
    """The calibration histogram (``hist`` on [-R, R)) cut to the bins covering ``span`` and summed
    into at most ``bars`` equal groups; counts are exact sums of the original bins."""
    n = hist.size
    width = 2.0 * hist_range / n
    nz = np.nonzero(hist)[0]
    first = min(int(nz[0]) if nz.size else n // 2, math.floor((span[0] + hist_range) / width))
    last = max(int(nz[-1]) + 1 if nz.size else n // 2 + 1, math.ceil((span[1] + hist_range) / width))
    first, last = max(first, 0), min(max(last, first + 1), n)
    group = max(1, math.ceil((last - first) / bars))
    width_bins = min(n, group * math.ceil((last - first) / group))
    first = max(0, min(first, n - width_bins))
    last = first + width_bins
    counts = hist[first:last].reshape(-1, group).sum(axis=1)
    return -hist_range + first * width, -hist_range + last * width, [int(c) for c in counts]
