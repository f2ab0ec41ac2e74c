"""What runs fast on a device, declared by each target, and the recipe's choice between speed and accuracy.

Quantizing only pays when the runtime's integer kernels take the types we emit:
onnxruntime's x86 kernels run uint8 activations with int8 weights (U8S8) about
3x faster than float, while the same graph with int8 activations ran no faster
than float on this machine. So each target declares, per device it serves, the
activation and weight types its fast kernels take (``FastTypes``), and the
recipe says what to optimise for when speed and accuracy pull apart
(``optimize_for``; unset, the target's default for that device applies).

- ``speed``: schemes the recipe leaves at their defaults take the device's fast
  types; a scheme the recipe sets explicitly is kept (the recipe insists) and
  the report says it is not the fast form. Q/DQ goes wherever the runtime has an
  integer kernel (the target's ``placement``).
- ``accuracy``: schemes the recipe leaves at their defaults take the most
  accurate form the target can represent (asymmetric activations, per-channel
  weights), and ops outside conv/linear/matmul/add (mul, pools, concat) stay
  float even where the runtime could run them in integer arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from qconvert.core.constraints import QuantConstraints
from qconvert.core.placement import Placement
from qconvert.recipe.model import Granularity, Mode, OptimizeFor, QScheme, Recipe

__all__ = ["FastTypes", "OptimizeFor", "SpeedChoice", "choose"]


@dataclass(frozen=True)
class FastTypes:
    """The types one device's integer kernels run fastest, and the target's default choice there.

    ``why`` is shown in reports: the kernel behaviour behind the choice, and what was measured.
    """

    device: str
    activation_mode: Mode
    weight_mode: Mode = "sym"
    weight_granularity: Granularity = "per_channel"
    default: OptimizeFor = "speed"
    why: str = ""


@dataclass(frozen=True)
class SpeedChoice:
    """What one target quantizes with after ``optimize_for`` is applied."""

    optimize_for: OptimizeFor
    source: Literal["recipe", "target default"]
    fast: FastTypes | None
    recipe: Recipe
    placement: Placement
    notes: tuple[str, ...] = ()


def choose(recipe: Recipe, target: str, fast: FastTypes | None, constraints: QuantConstraints,
           placement: Placement) -> SpeedChoice:
    """Apply the recipe's ``optimize_for`` (or the device default) to one target."""
    asked = recipe.optimize_for_target(target)
    optimize_for: OptimizeFor = asked or (fast.default if fast else "speed")
    source: Literal["recipe", "target default"] = "recipe" if asked else "target default"
    set_by_recipe = recipe.model_fields_set
    notes: list[str] = []
    acts, weights = recipe.activations, recipe.weights
    if optimize_for == "speed" and fast is not None:
        if "activations" not in set_by_recipe:
            acts = acts.model_copy(update={"mode": fast.activation_mode})
        elif _not_fast(acts.mode, fast.activation_mode, constraints):
            notes.append(f"optimize_for speed: the recipe sets activations '{acts.mode}'; on {fast.device} "
                         f"the fast form is '{fast.activation_mode}' ({fast.why})")
        if "weights" not in set_by_recipe:
            weights = weights.model_copy(update={"mode": fast.weight_mode, "granularity": fast.weight_granularity})
        elif weights.mode != fast.weight_mode:
            notes.append(f"optimize_for speed: the recipe sets weights '{weights.mode}'; on {fast.device} "
                         f"the fast form is '{fast.weight_mode}'")
    elif optimize_for == "accuracy":
        if "activations" not in set_by_recipe:
            acts = acts.model_copy(update={"mode": _most_accurate(constraints.activation_modes, acts.mode)})
        if "weights" not in set_by_recipe:
            weights = weights.model_copy(update={"mode": _most_accurate(constraints.weight_modes, weights.mode, prefer_sym=True),
                                                 "granularity": "per_channel"})
        placement = placement.for_accuracy()
    # Defaults the recipe did not set follow what the target can represent, silently; only an
    # explicit scheme is the recipe insisting (and is refused, or adapted with a warning).
    if "activations" not in set_by_recipe:
        acts = _representable(acts, constraints, weight=False)
    if "weights" not in set_by_recipe:
        weights = _representable(weights, constraints, weight=True)
    effective = recipe.model_copy(update={"activations": acts, "weights": weights})
    return SpeedChoice(optimize_for, source, fast, effective, placement, tuple(notes))


def _not_fast(mode: Mode, fast: Mode, constraints: QuantConstraints) -> bool:
    """A mode the target stores on the fast grid anyway (TFLite keeps asym_u as int8) is not a slow choice."""
    return mode != fast and dict(constraints.activation_mode_equivalents).get(mode) != fast


def _most_accurate(allowed: frozenset[Mode], current: Mode, prefer_sym: bool = False) -> Mode:
    """Asymmetric activations use the whole integer range on one-sided (ReLU) and skewed tensors;
    weights are centred, so symmetric loses nothing there and keeps the zero point out of the kernel."""
    order: tuple[Mode, ...] = ("sym", "asym_s", "asym_u") if prefer_sym else (current, "asym_u", "asym_s", "sym")
    return next((m for m in order if m in allowed), current)


def _representable(scheme: QScheme, constraints: QuantConstraints, weight: bool) -> QScheme:
    modes = constraints.weight_modes if weight else constraints.activation_modes
    max_bits = constraints.max_weight_bits if weight else constraints.max_activation_bits
    update: dict[str, Any] = {"bits": min(scheme.bits, max_bits)}
    if scheme.mode not in modes:
        update["mode"] = _most_accurate(modes, scheme.mode, prefer_sym=weight)
    if constraints.power_of_two == "required":
        update["power_of_two"] = True
    if weight and scheme.granularity == "per_channel" and (not constraints.weight_per_channel or constraints.per_channel_depthwise_only):
        update["granularity"] = "per_tensor"
    return scheme.model_copy(update=update)
