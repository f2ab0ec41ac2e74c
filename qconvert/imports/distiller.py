"""Distiller statistics files (``--qe-stats-file``, written by its QuantCalibrationStatsCollector)
as a build's ``--stats``: a Distiller user's saved calibration is reused, nothing is calibrated.

A file maps module names to ``inputs: {index: stats}`` and ``output: stats``, each with ``min``,
``max``, ``avg_min``, ``avg_max``, ``mean``, ``std`` (and ``b``, ``shape``). A module's output is the
tensor its last op produces in the captured graph; an input is what its first op reads from
outside it. Read: min/max, the averaged per-batch extremes, mean and std (so minmax, avg,
n_std and aciq_gauss work). Refused: range methods that need a histogram (percentile, entropy,
mse, aciq_laplace); Distiller stores none.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from torch.fx import Node

from qconvert.core.capture import Captured
from qconvert.core.graph import module_of
from qconvert.core.stats import StatsSet, TensorStats
from qconvert.errors import StatsError
from qconvert.recipe.model import Recipe

__all__ = ["HISTOGRAM_METHODS", "is_distiller_stats", "read_distiller_stats"]

HISTOGRAM_METHODS = ("percentile", "entropy", "mse", "aciq_laplace")
_FIELDS = ("min", "max", "avg_min", "avg_max", "mean", "std")
#: Distiller records no sample count; moments are kept as given, weighted as this many values.
_COUNT = 1 << 20


def is_distiller_stats(path: Path) -> bool:
    return path.suffix in (".yaml", ".yml") and path.is_file()


def _check_methods(recipe: Recipe, path: Path) -> None:
    used = {recipe.calibration.method} | {o.method for o in recipe.overrides if o.method}
    bad = sorted(used & set(HISTOGRAM_METHODS))
    if bad:
        raise StatsError(f"{path}: Distiller statistics have no histogram, which range method {', '.join(bad)} needs; "
                         "use minmax, avg, n_std or aciq_gauss")


def _entry(path: Path, where: str, raw: object) -> dict[str, float]:
    if not isinstance(raw, dict) or any(f not in raw for f in _FIELDS):
        raise StatsError(f"{path}: {where}: expected the fields {', '.join(_FIELDS)}")
    try:
        return {f: float(raw[f]) for f in _FIELDS}
    except (TypeError, ValueError) as e:
        raise StatsError(f"{path}: {where}: not a number ({e})") from e


def _tensor_stats(key: str, module: str, s: dict[str, float], bins: int) -> TensorStats:
    lo, hi = s["min"], s["max"]
    amax = max(abs(lo), abs(hi), 2.0**-24)
    grid = 2.0 ** (int(np.floor(np.log2(amax))) + 1)
    hist = np.zeros(bins, dtype=np.int64)
    for v in (lo, hi):
        hist[int(np.floor(v * bins / (2.0 * grid))) + bins // 2] += 1
    mean, std = s["mean"], s["std"]
    return TensorStats(key=key, module=module, min=lo, max=hi, sum_batch_min=s["avg_min"], sum_batch_max=s["avg_max"],
                       ema_min=s["avg_min"], ema_max=s["avg_max"], batches=1, count=_COUNT, sum=mean * _COUNT,
                       sum_sq=(std * std + mean * mean) * _COUNT, hist_range=grid, hist=hist)


def _ends(captured: Captured) -> tuple[dict[str, Node], dict[str, list[Node]]]:
    """Per module: the node producing its output, and the nodes its first op reads from outside."""
    last: dict[str, Node] = {}
    first_inputs: dict[str, list[Node]] = {}
    for node in captured.graph.graph.nodes:
        if node.op != "call_function":
            continue
        mod = module_of(node)
        parts = mod.split(".") if mod else []
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            last[name] = node
            if name not in first_inputs:
                first_inputs[name] = [a for a in node.args if isinstance(a, Node) and not module_of(a).startswith(name)]
    return last, first_inputs


def read_distiller_stats(path: Path, captured: Captured, recipe: Recipe) -> StatsSet:
    """The statistics of a Distiller stats file, keyed for this captured graph."""
    _check_methods(recipe, path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise StatsError(f"{path}: not a readable Distiller stats file ({e})") from e
    if not isinstance(raw, dict) or not raw:
        raise StatsError(f"{path}: expected a mapping of module names to inputs/output statistics")
    last, first_inputs = _ends(captured)
    bins = recipe.calibration.bins
    tensors: dict[str, TensorStats] = {}
    unknown = [m for m in raw if str(m) not in last]
    if unknown:
        raise StatsError(f"{path}: module '{unknown[0]}' is not a layer of the model ({len(unknown)} unknown); "
                         "run 'qconvert layers' to list the module names")
    for module, entry in raw.items():
        module = str(module)
        if not isinstance(entry, dict):
            raise StatsError(f"{path}: {module}: expected 'inputs' and 'output'")
        if "output" in entry:
            node = last[module]
            tensors[node.name] = _tensor_stats(node.name, module, _entry(path, f"{module}.output", entry["output"]), bins)
        for idx, stats in (entry.get("inputs") or {}).items():
            ins = first_inputs.get(module, [])
            if int(idx) < len(ins) and ins[int(idx)].name not in tensors:
                n = ins[int(idx)]
                tensors[n.name] = _tensor_stats(n.name, module_of(n), _entry(path, f"{module}.inputs.{idx}", stats), bins)
    return StatsSet(captured.fingerprint, tensors)
