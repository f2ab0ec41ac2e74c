"""``auto_fallback``: keep the most sensitive layers at higher precision until the gates pass.

The torch simulation decides what to try (a variant the simulation already fails is not
built); the runtimes decide what passes: each variant the simulation accepts is built for
every target and checked against the gates like any build. The screening is per target:
each target's simulation quantizes the variant with that target's plan (its effective
schemes, constraints and Q/DQ placement, ``qconvert.targets.plan``) and is judged by that
target's gates, so a variant is built only when every target's simulation passes. Layers
are added in the order of what each regains alone (``rank_layers``), ranked under the plan
of the first target whose simulation fails, one at a time, up to ``max_layers``. The chosen
recipe is written next to the report with the layers spelled out, so committing it
reproduces the artifacts without the search.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from qconvert.core.quantize import QuantizedModel
from qconvert.core.stats import StatsSet
from qconvert.errors import DataError
from qconvert.io.data import Dataset
from qconvert.progress import track
from qconvert.recipe.model import AutoFallback, Recipe
from qconvert.sensitivity.rank import Sensitivity, rank_layers
from qconvert.sensitivity.simulate import Evaluator, SimScore
from qconvert.sensitivity.variants import candidate_layers, kept
from qconvert.targets.plan import Planner, TargetPlan
from qconvert.verify.gates import GateCheck, evaluate, gates_for
from qconvert.verify.references import FloatReferences
from qconvert.verify.report_schema import Fallback, FallbackScreen, FallbackStepEntry

if TYPE_CHECKING:
    from qconvert.session import Session

__all__ = ["FallbackResult", "FallbackStep", "TargetScreen", "run_fallback", "write_recipe"]

#: Builds every target from a session and returns all its gate checks.
BuildAll = Callable[["Session"], list[GateCheck]]


@dataclass(frozen=True)
class TargetScreen:
    """One target's simulation of a variant, quantized with that target's plan and judged by its gates."""

    target: str
    simulated: SimScore
    passed: bool

    def entry(self) -> FallbackScreen:
        return FallbackScreen(target=self.target, simulated=self.simulated.entry(), passed=self.passed)



@dataclass(frozen=True)
class FallbackStep:
    """One variant tried: the layers kept, each target's simulation, and (if built) whether the artifacts passed."""

    layers: tuple[str, ...]
    screens: tuple[TargetScreen, ...]
    built: bool | None = None
    failures: tuple[str, ...] = ()

    @property
    def simulation_passed(self) -> bool:
        return all(s.passed for s in self.screens)

    @property
    def simulated(self) -> SimScore:
        """The figures of the target farthest from float (lowest SQNR), where one line shows one score."""
        return min(self.screens, key=lambda s: s.simulated.sqnr_db).simulated

    def entry(self) -> FallbackStepEntry:
        """As report.json's ``fallback.steps`` holds it."""
        return FallbackStepEntry(layers=list(self.layers), simulated=self.simulated.entry(), simulation_passed=self.simulation_passed,
                                 targets=[s.entry() for s in self.screens], built=self.built, failures=list(self.failures))


@dataclass(frozen=True)
class FallbackResult:
    config: AutoFallback
    layers: tuple[str, ...]
    recipe: Recipe
    passed: bool
    steps: tuple[FallbackStep, ...]
    sensitivity: Sensitivity | None
    recipe_file: str | None
    #: The target whose plan the layers were ranked under (None: no ranking was needed).
    ranked_on: str | None = None

    def entry(self) -> Fallback:
        """As report.json's ``fallback`` holds it (``ranking``: as 'qconvert sensitivity --json' writes it)."""
        return Fallback(metric=self.config.metric, keep=self.config.keep, max_layers=self.config.max_layers, layers=list(self.layers),
                        passed=self.passed, recipe_file=self.recipe_file, screened="per target", ranked_on=self.ranked_on,
                        steps=[s.entry() for s in self.steps],
                        ranking=self.sensitivity.entry() if self.sensitivity is not None else None)


def run_fallback(session: Session, stats: StatsSet, data: Dataset, targets: Mapping[str, Planner], build_all: BuildAll,
                 out: Path, source: str, references: FloatReferences | None = None,
                 keep_weight_bits: int = 16) -> tuple[list[GateCheck], FallbackResult]:
    """Search, build, and write ``out/<recipe_file>`` when layers were kept; returns the last build's checks.

    ``targets``: each target's planner (``qconvert.targets.plan.planner``), which screens every variant.
    ``references``: the build's float outputs over ``data``, so the search runs no float pass of its own.
    ``keep_weight_bits``: the weight width of layers kept at int16 (the narrowest the targets take, up to 16).
    """
    cfg = session.recipe.auto_fallback
    assert cfg is not None
    base = session.recipe.model_copy(update={"auto_fallback": None})
    evaluator = Evaluator(session.model, data, base.calibration.batch_size, references=references)
    if cfg.metric == "accuracy" and not evaluator.labelled:
        raise DataError(f"recipe auto_fallback.metric: accuracy needs labelled evaluation data, but {data.path} has no labels; "
                        "use metric: sqnr or give labels")

    scored: list[tuple[TargetPlan, SimScore]] = []  # targets whose plans coincide share one simulation

    def score(plan: TargetPlan) -> SimScore:
        same = (plan.recipe, plan.constraints, plan.placement)
        found = next((sc for p, sc in scored if (p.recipe, p.constraints, p.placement) == same), None)
        if found is None:
            found = evaluator.score(plan.quantize(session.captured, stats, session.calibration_source).graph)
            scored.append((plan, found))
        return found

    def simulate(layers: tuple[str, ...]) -> FallbackStep:
        variant = kept(base, layers, cfg.keep, keep_weight_bits)
        screens = []
        for name, plan_of in targets.items():
            sc = score(plan_of(variant))
            checks = evaluate(gates_for(base, name), name, evaluator.float_accuracy, sc.measured())
            screens.append(TargetScreen(name, sc, all(c.passed for c in checks)))
        return FallbackStep(layers, tuple(screens))

    steps: list[FallbackStep] = []
    order: list[str] | None = None
    sensitivity: Sensitivity | None = None
    chosen: tuple[str, ...] = ()
    ranked_on: str | None = None
    while True:
        step = simulate(chosen)
        budget_left = len(chosen) < cfg.max_layers and (order is None or len(chosen) < len(order))
        checks: list[GateCheck] = []
        if step.simulation_passed or not budget_left:
            checks = build_all(dataclasses.replace(session, recipe=kept(base, chosen, cfg.keep, keep_weight_bits)))
            failed = [c for c in checks if not c.passed]
            step = dataclasses.replace(step, built=not failed, failures=tuple(c.line() for c in failed))
        steps.append(step)
        if step.built or not budget_left:
            break
        if order is None:  # ranked under the plan of the first target whose simulation fails
            ranked_on = next(sc.target for sc in step.screens if not sc.passed) if not step.simulation_passed else step.screens[0].target
            sensitivity = _rank(base, session, stats, evaluator, targets[ranked_on], cfg, keep_weight_bits)
            order = [s.layer.name for s in sensitivity.by_regain()]
            if not order:
                break
        chosen = chosen + (order[len(chosen)],)
    if step.built is None:  # the ranking found no layer to keep: build plain PTQ so there are artifacts
        checks = build_all(dataclasses.replace(session, recipe=base))
    final = kept(base, chosen, cfg.keep, keep_weight_bits)
    written = write_recipe(out / cfg.recipe_file, final, chosen, cfg.keep, source) if chosen else None
    passed = all(c.passed for c in checks)
    return checks, FallbackResult(cfg, chosen, final, passed, tuple(steps), sensitivity, written, ranked_on)


def _rank(base: Recipe, session: Session, stats: StatsSet, evaluator: Evaluator, plan_of: Planner,
          cfg: AutoFallback, keep_weight_bits: int = 16) -> Sensitivity:
    def quant(r: Recipe) -> QuantizedModel:
        return plan_of(r).quantize(session.captured, stats, session.calibration_source)

    types = {n: type(m).__name__ for n, m in session.model.named_modules()}
    layers = candidate_layers(session.captured.graph, types)
    done = iter(track(range(len(layers)), len(layers), "sensitivity"))
    return rank_layers(base, layers, quant, evaluator, cfg.metric, cfg.keep, progress=lambda _: next(done, None),
                       keep_weight_bits=keep_weight_bits)


def write_recipe(path: Path, recipe: Recipe, layers: tuple[str, ...], keep: str, source: str) -> str:
    """Write ``recipe`` as YAML with a header saying where it came from; returns the file name.

    Exactly the keys the recipe set are written, also where a value equals the default: a scheme
    the recipe sets is one ``optimize_for`` keeps, while one it leaves out takes the target's
    fast types, so writing a set-to-default scheme or leaving out an unset one would change
    what a rebuild from this file quantizes with.
    """
    data = recipe.model_dump(mode="json", exclude_unset=True)
    head = (f"# Written by 'qconvert build' (auto_fallback) from {source}.\n"
            f"# Kept at {keep}: {', '.join(layers)}. Commit this file and build with it to skip the search.\n")
    path.write_text(head + yaml.safe_dump(data, sort_keys=False, default_flow_style=None))
    return path.name

