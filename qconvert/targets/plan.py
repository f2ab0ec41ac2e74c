"""What one target quantizes with: the effective schemes, constraints and Q/DQ placement for (recipe, target).

Every command that quantizes for a target asks ``plan_for`` (build, ``qconvert sensitivity
--target``, QAT's ``prepare(target=...)`` and ``auto_fallback``'s screening), so a variant is
judged under exactly what a build for that target would quantize with: the recipe after
``optimize_for`` and the target's fast types (``qconvert.targets.speed``), the target's
``constraints`` and its ``placement``. Without a target the plan is the core's defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qconvert.core.constraints import QuantConstraints
from qconvert.core.placement import DEFAULT_PLACEMENT, Placement
from qconvert.targets.speed import SpeedChoice, choose

if TYPE_CHECKING:
    import torch

    from qconvert.core.capture import Captured
    from qconvert.core.quantize import QuantizedModel
    from qconvert.core.stats import StatsSet
    from qconvert.recipe.model import Recipe
    from qconvert.targets.base import Target, TargetOptions

__all__ = ["Planner", "TargetPlan", "plan_for", "planner"]

Batches = Callable[[], Iterable[tuple["torch.Tensor", ...]]]


@dataclass(frozen=True)
class TargetPlan:
    """The effective recipe, constraints and placement of one target ("" : no target, the core's defaults).

    ``choice`` says how ``optimize_for`` chose the schemes; reports show it.
    """

    target: str
    recipe: Recipe
    constraints: QuantConstraints
    placement: Placement
    choice: SpeedChoice

    @property
    def notes(self) -> tuple[str, ...]:
        return self.choice.notes

    def quantize(self, captured: Captured, stats: StatsSet, calibration_batches: Batches | None = None,
                 weight_ranges: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                 recipe: Recipe | None = None, constraints: QuantConstraints | None = None) -> QuantizedModel:
        """The Q/DQ model of this plan; ``recipe``/``constraints`` replace the plan's for a target's own
        variants that are already effective (TIDL's per-layer precision tables, ``CheckContext.requantize``)."""
        from qconvert.core.quantize import quantize

        return quantize(captured, recipe if recipe is not None else self.recipe, stats,
                        constraints if constraints is not None else self.constraints, self.target, self.placement,
                        calibration_batches=calibration_batches, weight_ranges=weight_ranges)


def plan_for(recipe: Recipe, target: Target | None = None, options: TargetOptions | None = None) -> TargetPlan:
    """The plan for ``recipe`` on ``target`` with ``options`` (the target's defaults when None).

    A recipe variant (a layer kept at higher precision) gets its own plan: ``optimize_for`` reads
    which schemes the recipe sets, so the variant is planned, not patched into another plan.
    """
    if target is None:  # the recipe's optimize_for still applies, with no fast types to take
        choice = choose(recipe, "", None, QuantConstraints(), DEFAULT_PLACEMENT)
        return TargetPlan("", choice.recipe, QuantConstraints(), choice.placement, choice)
    options = options if options is not None else target.parse_options(None)
    constraints = target.constraints(options)
    choice = choose(recipe, target.name, target.fast_types(options), constraints, target.placement(options))
    return TargetPlan(target.name, choice.recipe, constraints, choice.placement, choice)


#: The plan of any recipe variant on one target (``planner``): ``auto_fallback`` screens its variants with it.
Planner = Callable[["Recipe"], TargetPlan]


def planner(target: Target | None, options: TargetOptions | None = None) -> Planner:
    """``plan_for`` with the target and its options fixed: a variant's plan on that target."""
    return lambda recipe: plan_for(recipe, target, options)
