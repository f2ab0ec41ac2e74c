"""``auto_fallback``: keep the most sensitive layers at higher precision until the gates pass.

The torch simulation decides what to try (a variant the simulation already fails is not
built); the runtimes decide what passes: each variant the simulation accepts is built for
every target and checked against the gates like any build. Layers are added in the order
of what each regains alone (``rank_layers``), one at a time, up to ``max_layers``. The
chosen recipe is written next to the report with the layers spelled out, so committing
it reproduces the artifacts without the search.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from qconvert.core.quantize import QuantizedModel, quantize
from qconvert.core.stats import StatsSet
from qconvert.errors import DataError
from qconvert.io.data import Dataset
from qconvert.progress import track
from qconvert.recipe.model import AutoFallback, Recipe
from qconvert.sensitivity.rank import Sensitivity, rank_layers
from qconvert.sensitivity.simulate import Evaluator, SimScore
from qconvert.sensitivity.variants import candidate_layers, kept
from qconvert.verify.gates import GateCheck, evaluate, gates_for
from qconvert.verify.references import FloatReferences

if TYPE_CHECKING:
    from qconvert.session import Session

__all__ = ["FallbackResult", "FallbackStep", "run_fallback", "write_recipe"]

#: Builds every target from a session and returns all its gate checks.
BuildAll = Callable[["Session"], list[GateCheck]]


@dataclass(frozen=True)
class FallbackStep:
    """One variant tried: the layers kept, its simulation, and (if built) whether the artifacts passed."""

    layers: tuple[str, ...]
    simulated: SimScore
    simulation_passed: bool
    built: bool | None = None
    failures: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "simulated": self.simulated.to_json(), "simulation_passed": self.simulation_passed,
                "built": self.built, "failures": list(self.failures)}


@dataclass(frozen=True)
class FallbackResult:
    config: AutoFallback
    layers: tuple[str, ...]
    recipe: Recipe
    passed: bool
    steps: tuple[FallbackStep, ...]
    sensitivity: Sensitivity | None
    recipe_file: str | None

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.config.metric, "keep": self.config.keep, "max_layers": self.config.max_layers,
                "layers": list(self.layers), "passed": self.passed, "recipe_file": self.recipe_file,
                "steps": [s.to_json() for s in self.steps],
                "ranking": self.sensitivity.to_json() if self.sensitivity is not None else None}


def run_fallback(session: Session, stats: StatsSet, data: Dataset, targets: list[str], build_all: BuildAll,
                 out: Path, source: str, references: FloatReferences | None = None,
                 keep_weight_bits: int = 16) -> tuple[list[GateCheck], FallbackResult]:
    """Search, build, and write ``out/<recipe_file>`` when layers were kept; returns the last build's checks.

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

    def quant(r: Recipe) -> QuantizedModel:
        return quantize(session.captured, r, stats, calibration_batches=session.calibration_source)

    def simulate(layers: tuple[str, ...]) -> FallbackStep:
        score = evaluator.score(quant(kept(base, layers, cfg.keep, keep_weight_bits)).graph)
        checks = [c for t in targets for c in evaluate(gates_for(base, t), t, evaluator.float_accuracy, score.measured())]
        return FallbackStep(layers, score, all(c.passed for c in checks))

    steps: list[FallbackStep] = []
    order: list[str] | None = None
    sensitivity: Sensitivity | None = None
    chosen: tuple[str, ...] = ()
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
        if order is None:
            sensitivity = _rank(base, session, evaluator, quant, cfg, keep_weight_bits)
            order = [s.layer.name for s in sensitivity.by_regain()]
            if not order:
                break
        chosen = chosen + (order[len(chosen)],)
    if step.built is None:  # the ranking found no layer to keep: build plain PTQ so there are artifacts
        checks = build_all(dataclasses.replace(session, recipe=base))
    final = kept(base, chosen, cfg.keep, keep_weight_bits)
    written = write_recipe(out / cfg.recipe_file, final, chosen, cfg.keep, source) if chosen else None
    passed = all(c.passed for c in checks)
    return checks, FallbackResult(cfg, chosen, final, passed, tuple(steps), sensitivity, written)


def _rank(base: Recipe, session: Session, evaluator: Evaluator, quant: Callable[[Recipe], QuantizedModel],
          cfg: AutoFallback, keep_weight_bits: int = 16) -> Sensitivity:
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

