"""From imported grids to what the build consumes: ranges, a recipe, and the tensors between.

A grid becomes the interval it covers, chosen so that the build's own observers derive
exactly the imported scale and zero point when the target keeps the source's scheme:
``[(qmin - zp) * s, (qmax - zp) * s]`` for an affine grid, ``[-h * s, h * s]`` with
``h = min(-qmin, qmax)`` for a symmetric one. A target that needs another scheme derives
its own grid from the same interval (and ``qconvert.imports.grid`` reports the change).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch.fx import GraphModule, Node

from qconvert.core.annotate import QConvertQuantizer
from qconvert.core.capture import Captured
from qconvert.core.graph import OpKind, module_of, op_kind
from qconvert.core.policy import QuantPolicy
from qconvert.core.stats import StatsSet
from qconvert.imports.annotatable import annotatable
from qconvert.imports.types import Grid, ImportedQuant, ImportedTensor
from qconvert.qat.build import LearnedRanges, range_stats
from qconvert.recipe.model import LayerOverride, QScheme, Recipe

__all__ = ["ImportPlan", "grid_range", "plan_import"]

#: Ops whose output lies on their input's grid (the source shares the quantizer, or has none there).
_SAME_GRID = {OpKind.PASS, OpKind.POOL, OpKind.FUSED_ACT}
#: Ops whose input holds exactly their output's values: a grid may be taken backwards through them.
_aten = torch.ops.aten
_RESHAPE = {_aten.flatten.using_ints, _aten.view.default, _aten.reshape.default, _aten.permute.default, _aten.transpose.int,
            _aten.squeeze.dim, _aten.squeeze.dims, _aten.unsqueeze.default, _aten.contiguous.default, _aten.clone.default,
            _aten.dropout.default}


@dataclass(frozen=True)
class ImportPlan:
    """An import ready for the build: the recipe it quantizes with and the learned ranges."""

    recipe: Recipe
    learned: LearnedRanges


def grid_range(grid: Grid, affine: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The interval a grid covers, per channel where it is (see the module docstring).

    ``affine``: the interval for an affine (asym) scheme even where the grid is symmetric, which
    gives back the symmetric grid exactly ([-128 s, 127 s] is codes -128..127 at scale s, zero point 0).
    """
    s = torch.tensor(grid.scale, dtype=torch.float64)
    if grid.symmetric and not affine:
        half = float(min(-grid.qmin, grid.qmax))
        return -half * s, half * s
    zp = torch.tensor(grid.zero_point, dtype=torch.float64)
    return (grid.qmin - zp) * s, (grid.qmax - zp) * s


def plan_import(imported: ImportedQuant, captured: Captured, base: Recipe) -> ImportPlan:
    """The recipe (the source's schemes, every range read as min/max) and the ranges of every
    tensor a build may quantize that the source's grids cover, directly or through ops that
    keep the grid (reshape, pooling, ReLU)."""
    notes = list(imported.notes)
    imported = ImportedQuant(imported.tool, tuple(imported.activations().values()) +
                             tuple(_fold_batchnorm(captured.graph, imported.weights(), notes).values()), imported.notes)
    recipe = _recipe(imported, base, captured.graph)
    acts = dict(imported.activations())
    for key, via in _propagate(captured.graph, acts, _candidates(captured, recipe)).items():
        notes.append(f"tensor '{key}' has no quantizer in the source: it takes the grid of '{via}' (same values)")
    bins = recipe.calibration.bins
    stats = {}
    affine = recipe.activations.mode != "sym"
    for key, t in acts.items():
        lo, hi = grid_range(t.grid, affine=affine)
        stats[key] = range_stats(key, t.module, float(lo.reshape(-1)[0]), float(hi.reshape(-1)[0]), bins)
    weights = {}
    for key, t in imported.weights().items():
        lo, hi = grid_range(t.grid)
        weights[key] = (lo.float(), hi.float()) if t.grid.per_channel else (lo.reshape(()).float(), hi.reshape(()).float())
    full = ImportedQuant(imported.tool, tuple(acts.values()) + tuple(imported.weights().values()), tuple(notes))
    learned = LearnedRanges(StatsSet(captured.fingerprint, stats), weights, "grids read from the model",
                            label=f"imported from {imported.tool}", imported=full)
    return ImportPlan(recipe, learned)


_BN = {_aten.batch_norm.default, _aten._native_batch_norm_legit_no_training.default}


def _fold_batchnorm(gm: GraphModule, weights: dict[str, ImportedTensor], notes: list[str]) -> dict[str, ImportedTensor]:
    """A weight quantized before an unfused BatchNorm (ModelOpt, Brevitas): the build folds the
    BatchNorm into the weight, so the grid becomes per channel, scale times |gamma / std| (the
    same integer codes, sign folded into them). Symmetric grids only."""
    out = dict(weights)
    for node in gm.graph.nodes:
        users = list(node.users)
        if op_kind(node) != OpKind.WEIGHTED or len(users) != 1 or users[0].target not in _BN:
            continue
        key = f"{module_of(node) or node.name}.weight"
        t = weights.get(key)
        if t is None:
            continue
        if not t.grid.symmetric:
            notes.append(f"weight '{key}': an affine grid before a BatchNorm cannot be folded into it; imported as is")
            continue
        bn = users[0]
        gamma, var = _attr(gm, bn.args[1]), _attr(gm, bn.args[4])
        eps = float(bn.args[7] if bn.target == _aten.batch_norm.default else bn.args[6])
        if var is None:
            continue
        factor = (gamma if gamma is not None else torch.ones_like(var)).double() / torch.sqrt(var.double() + eps)
        scale = torch.tensor(t.grid.scale, dtype=torch.float64).expand_as(factor) * factor.abs()
        grid = Grid(tuple(scale.tolist()), (0,) * scale.numel(), t.grid.qmin, t.grid.qmax, 0)
        out[key] = ImportedTensor(key, "weight", t.module, grid, t.source)
    return out


def _attr(gm: GraphModule, arg: object) -> torch.Tensor | None:
    if not isinstance(arg, Node) or arg.op != "get_attr":
        return None
    obj: object = gm
    for part in str(arg.target).split("."):
        obj = getattr(obj, part)
    return obj.detach() if isinstance(obj, torch.Tensor) else None


def _most_common(grids: list[Grid], fallback: QScheme) -> QScheme:
    if not grids:
        return fallback
    return Counter(g.scheme() for g in grids).most_common(1)[0][0]


def _activation_scheme(grids: list[Grid], fallback: QScheme) -> QScheme:
    """One scheme whose grids include every imported one: the common scheme, or for mixed
    symmetric/unsigned grids the affine signed one (which holds both exactly)."""
    schemes = {g.scheme() for g in grids}
    if len(schemes) <= 1:
        return schemes.pop() if schemes else fallback
    return QScheme(bits=max(s.bits for s in schemes), mode="asym_s" if any(g.qmin < 0 for g in grids) else "asym_u",
                   granularity="per_tensor", power_of_two=all(s.power_of_two for s in schemes))


def _recipe(imported: ImportedQuant, base: Recipe, gm: GraphModule) -> Recipe:
    """The base recipe with the source's schemes (the most common ones, per-layer overrides
    for the rest), weights of layers the source left float excluded, and ranges read as min/max."""
    acts, weights = imported.activations(), imported.weights()
    act_scheme = _activation_scheme([t.grid for t in acts.values()], base.activations)
    w_scheme = _most_common([t.grid for t in weights.values()], base.weights)
    overrides: dict[str, LayerOverride] = {}
    for t in weights.values():
        if t.grid.scheme() != w_scheme and t.module:
            overrides[t.module] = LayerOverride(match=t.module, weights=t.grid.scheme())
    float_layers = sorted({module_of(n) for n in gm.graph.nodes if op_kind(n) == OpKind.WEIGHTED
                           and f"{module_of(n) or n.name}.weight" not in weights and module_of(n)})
    calib = base.calibration.model_copy(update={"method": "minmax"})
    narrow = all(t.grid.qmin == -t.grid.qmax for t in weights.values() if t.grid.symmetric)
    return base.model_copy(update={
        "narrow_weights": narrow,
        "activations": act_scheme, "weights": w_scheme, "calibration": calib, "weight_method": "minmax",
        "overrides": tuple(overrides.values()), "exclude": tuple(dict.fromkeys(base.exclude + tuple(float_layers))),
        "bias_correction": False, "equalization": False, "no_clip": (), "weight_rounding": "nearest",
    })


def _candidates(captured: Captured, recipe: Recipe) -> set[str]:
    """Activation keys the default placement quantizes (no data: annotation only)."""
    quantizer = QConvertQuantizer(QuantPolicy(recipe))
    quantizer.annotate(annotatable(captured.graph))
    return {k for k, tq in quantizer.decisions.items() if tq.role == "activation"}


def _propagate(gm: GraphModule, acts: dict[str, ImportedTensor], wanted: set[str]) -> dict[str, str]:
    """Give tensors without a quantizer the grid of a neighbour whose values they share:
    forward through data movement, pooling and ReLU, backward into the input of such an op.
    ``acts`` grows in place; returns key -> the key whose grid it took."""
    nodes = {n.name: n for n in gm.graph.nodes}
    taken: dict[str, str] = {}
    consumers = _consumer_inputs(gm)
    for _ in range(len(nodes)):
        changed = False
        for node in gm.graph.nodes:
            if node.name in acts or not _is_tensor(node):
                continue
            src = _grid_neighbour(node, acts)
            if src is None:
                continue
            if node.name not in wanted and node.name not in consumers:
                continue
            acts[node.name] = ImportedTensor(node.name, "activation", module_of(node), acts[src].grid, acts[src].source)
            taken[node.name] = src
            changed = True
        if not changed:
            break
    return taken


def _grid_neighbour(node: Node, acts: dict[str, ImportedTensor]) -> str | None:
    if op_kind(node) in _SAME_GRID and isinstance(node.args[0], Node) and node.args[0].name in acts:
        return node.args[0].name
    users = [u for u in node.users if u.target in _RESHAPE and u.args and u.args[0] is node]
    if len(users) == len(node.users) == 1 and users[0].name in acts:
        return users[0].name
    return None


def _consumer_inputs(gm: GraphModule) -> set[str]:
    """Data inputs of conv/linear/matmul/add: the tensors any placement may quantize."""
    out: set[str] = set()
    for node in gm.graph.nodes:
        kind = op_kind(node)
        args = node.args[:1] if kind == OpKind.WEIGHTED else node.args[:2] if kind in (OpKind.MATMUL, OpKind.BINARY) else ()
        out |= {a.name for a in args if isinstance(a, Node)}
    return out


def _is_tensor(node: Node) -> bool:
    val = node.meta.get("val")
    return node.op in ("call_function", "placeholder") and isinstance(val, torch.Tensor) and val.is_floating_point()
