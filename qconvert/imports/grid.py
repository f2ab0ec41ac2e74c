"""Per target: does it quantize only tensors the source has grids for, and which grids did it change?

A target keeps an imported grid when its constraints allow the source's scheme. Where it must
re-encode (TensorRT: symmetric; TIDL: power-of-two scales; a narrower weight code range), the
report names every tensor whose grid changed and by how much.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qconvert.core.annotate import QConvertQuantizer
from qconvert.core.capture import Captured
from qconvert.core.constraints import QuantConstraints
from qconvert.core.observer import QObserver
from qconvert.core.placement import Placement
from qconvert.core.policy import QuantPolicy
from qconvert.core.quantize import QuantizedModel
from qconvert.core.stats import StatsSet
from qconvert.errors import ConstraintError
from qconvert.imports.annotatable import annotatable
from qconvert.imports.ranges import grid_range
from qconvert.imports.types import Grid
from qconvert.qat.build import LearnedRanges, range_stats
from qconvert.recipe.model import Recipe

__all__ = ["GridChange", "grid_changes", "target_stats"]


@dataclass(frozen=True)
class GridChange:
    key: str
    module: str
    role: str
    #: Largest |new scale / imported scale - 1| over channels.
    scale_change: float
    was: str
    now: str

    def line(self) -> str:
        where = f"layer '{self.module}'" if self.module else "model input"
        return (f"grid changed: {self.role} '{self.key}' ({where}): {self.was} -> {self.now}, "
                f"scale changed by up to {100.0 * self.scale_change:.2f}%")


def target_stats(learned: LearnedRanges, captured: Captured, recipe: Recipe, constraints: QuantConstraints, target: str,
                 placement: Placement) -> StatsSet:
    """The imported ranges as this target's observers need them, after checking coverage.

    Each activation gets the interval that gives back its grid under the scheme this target
    quantizes it with (symmetric: +-127 s; affine: [(qmin - zp) s, (qmax - zp) s]). A target that
    quantizes a tensor the source left without a grid is refused, naming the tensor: an imported
    build calibrates nothing, so there is no range to give it.
    """
    if learned.imported is None:
        return learned.stats
    quantizer = QConvertQuantizer(QuantPolicy(recipe, constraints, target), placement=placement)
    quantizer.annotate(annotatable(captured.graph))
    grids = learned.imported.activations()
    tensors = dict(learned.stats.tensors)
    for key, tq in quantizer.decisions.items():
        if tq.role != "activation" or tq.dynamic or tq.fixed_range is not None:
            continue
        if key not in tensors:
            raise ConstraintError(
                f"target '{target}': tensor '{key}' (layer '{tq.module or '<input>'}') is quantized on this target, but the "
                f"{learned.imported.tool} model has no quantizer there and an imported build calibrates nothing; "
                "quantize that tensor in the source model, or build a target whose placement it matches"
            )
        if key in grids:
            lo, hi = grid_range(grids[key].grid, affine=tq.scheme.mode != "sym")
            tensors[key] = range_stats(key, tq.module, float(lo.reshape(-1)[0]), float(hi.reshape(-1)[0]), recipe.calibration.bins)
    return StatsSet(learned.stats.fingerprint, tensors)


def _describe(scale: torch.Tensor, zp: torch.Tensor, qmin: int, qmax: int) -> str:
    s = scale.reshape(-1)
    z = zp.reshape(-1)
    sc = f"scale {float(s[0]):.6g}" if s.numel() == 1 else f"{s.numel()} scales {float(s.min()):.4g}..{float(s.max()):.4g}"
    zs = f"zp {int(z[0])}" if z.numel() == 1 or bool((z == z[0]).all()) else "zp per channel"
    return f"[{qmin}, {qmax}] {sc} {zs}"


def _grid_tensors(g: Grid) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(g.scale, dtype=torch.float64), torch.tensor(g.zero_point, dtype=torch.int64)


def grid_changes(learned: LearnedRanges, stats: StatsSet, qmodel: QuantizedModel) -> list[GridChange]:
    """Every imported tensor whose grid on this target differs from the source's."""
    if learned.imported is None:
        return []
    imported = {t.key: t for t in learned.imported.tensors}
    out: list[GridChange] = []
    for key, tq in qmodel.decisions.items():
        src = imported.get(key)
        if src is None or tq.dynamic:
            continue
        obs = QObserver(tq, qmodel.recipe.calibration)
        if tq.role == "weight":
            obs.learned_range = learned.weights[key]
        else:
            obs.load_stats(stats.tensors[key])
        scale, zp = obs.calculate_qparams()
        s0, z0 = _grid_tensors(src.grid)
        scale = scale.double().reshape(-1)
        # the same values: a zero point moved with the storage type (uint8 -> int8) is no change
        shift = obs.quant_min - src.grid.qmin
        same_codes = (obs.quant_max - obs.quant_min) == (src.grid.qmax - src.grid.qmin)
        ratio = float((scale / s0 - 1.0).abs().max()) if scale.numel() == s0.numel() or scale.numel() == 1 else float("nan")
        zp_same = bool(((zp.reshape(-1) - shift) == z0).all()) if zp.numel() in (1, z0.numel()) else False
        if ratio <= 1e-6 and zp_same and same_codes:
            continue
        out.append(GridChange(key, tq.module, tq.role, ratio, _describe(s0, z0, src.grid.qmin, src.grid.qmax),
                              _describe(scale, zp, obs.quant_min, obs.quant_max)))
    return out
