"""Layers a recipe can single out, and the recipe variants sensitivity and fallback try.

A "layer" is the innermost named module owning a quantizable op (conv, linear, add,
matmul, pool, concatenation), the same names ``exclude`` and ``overrides`` take.
Every variant is an ordinary recipe, so it is quantized, reported and committed
exactly like one the user wrote.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.fx import GraphModule

from qconvert.core.graph import OpKind, module_of, op_kind
from qconvert.core.policy import matches
from qconvert.recipe.model import LayerOverride, Recipe

__all__ = ["ROOT_OPS", "Layer", "candidate_layers", "kept", "only_quantized"]

_QUANTIZABLE = {OpKind.WEIGHTED, OpKind.BINARY, OpKind.MATMUL, OpKind.POOL, OpKind.CAT}
#: The exclude pattern that matches only ops outside every module (``x + y`` in the model's own
#: forward): ``matches("", m)`` is true for the module name "" alone.
ROOT_OPS = ""


@dataclass(frozen=True)
class Layer:
    """A module name usable in ``exclude``/``overrides``, and what it computes (for people)."""

    name: str
    op: str


def candidate_layers(graph: GraphModule, module_types: dict[str, str] | None = None) -> tuple[Layer, ...]:
    """Named modules that own a quantizable op, in graph order."""
    seen: dict[str, Layer] = {}
    for node in graph.graph.nodes:
        kind = op_kind(node)
        name = module_of(node)
        if kind in _QUANTIZABLE and name and name not in seen:
            seen[name] = Layer(name, (module_types or {}).get(name, kind))
    return tuple(seen.values())


def only_quantized(recipe: Recipe, layer: str, layers: tuple[Layer, ...]) -> Recipe:
    """``recipe`` with every other candidate layer (and ops outside modules) kept in float.

    A parent of ``layer`` is not excluded (its pattern would cover ``layer`` too), so ops a
    parent module runs itself stay quantized in this variant.
    """
    others = [l.name for l in layers if l.name != layer and not matches(l.name, layer)]
    return recipe.model_copy(update={"exclude": tuple(recipe.exclude) + tuple(others) + (ROOT_OPS,)})


def kept(recipe: Recipe, layers: tuple[str, ...], keep: str, weight_bits: int = 16) -> Recipe:
    """``recipe`` with ``layers`` kept at higher precision: in float, or with 16-bit symmetric activations
    (the form every 16-bit target takes: TFLite's 16x8 and TIDL want zero point 0) and ``weight_bits``-bit
    weights (at most 16: TFLite's 16x8 mode keeps 8-bit weights)."""
    if not layers:
        return recipe
    if keep == "float":
        new = tuple(n for n in layers if n not in recipe.exclude)
        return recipe.model_copy(update={"exclude": tuple(recipe.exclude) + new})
    overrides = list(recipe.overrides)
    for name in layers:
        i = next((k for k, o in enumerate(overrides) if o.match == name), None)
        base = overrides[i] if i is not None else LayerOverride.model_validate({"match": name})
        weights = base.weights or recipe.weights
        wide = base.model_copy(update={
            "weights": weights.model_copy(update={"bits": min(16, max(weight_bits, weights.bits))}),
            "activations": (base.activations or recipe.activations).model_copy(update={"bits": 16, "mode": "sym"}),
        })
        if i is None:
            overrides.insert(0, wide)
        else:
            overrides[i] = wide
    return recipe.model_copy(update={"overrides": tuple(overrides)})
