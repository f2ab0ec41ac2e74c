"""Check a build report against the recipe's gates and the targets' parity tolerances."""

from __future__ import annotations

from typing import Any

from qconvert.recipe.model import Gates, Recipe

__all__ = ["check_gates", "gates_for"]


def gates_for(recipe: Recipe, target: str) -> Gates:
    """Global gates, with a target's own gates replacing them field by field."""
    own = recipe.target_gates.get(target)
    if own is None:
        return recipe.gates
    merged = recipe.gates.model_dump()
    merged.update({k: v for k, v in own.model_dump().items() if v is not None})
    return Gates(**merged)


def check_gates(recipe: Recipe, report: dict[str, Any]) -> list[str]:
    """One line per failed gate: target, metric, value, limit."""
    failures: list[str] = []
    float_acc = report["float"]["accuracy"]
    for name, t in report["targets"].items():
        if not t.get("executed"):
            continue
        g = gates_for(recipe, name)
        sim, flt = t["vs_simulation"], t["vs_float"]
        lsb_limit = g.max_parity_lsb if g.max_parity_lsb is not None else t["tolerance_lsb"]
        if sim["max_lsb_error"] is not None and sim["max_lsb_error"] > lsb_limit + 1e-3:
            failures.append(f"{name}: parity vs simulation {sim['max_lsb_error']:.3f} LSB > limit {lsb_limit} LSB")
        if g.max_accuracy_drop is not None and float_acc is not None and t["accuracy"] is not None:
            drop = float_acc - t["accuracy"]
            if drop > g.max_accuracy_drop:
                failures.append(f"{name}: accuracy drop {drop:.2f} pp > limit {g.max_accuracy_drop} pp")
        if g.min_sqnr_db is not None and flt["sqnr_db"] < g.min_sqnr_db:
            failures.append(f"{name}: SQNR vs float {flt['sqnr_db']:.2f} dB < limit {g.min_sqnr_db} dB")
        if g.min_top1_agreement is not None and flt["top1_agreement"] is not None and flt["top1_agreement"] < g.min_top1_agreement:
            failures.append(f"{name}: top-1 agreement {flt['top1_agreement']:.4f} < limit {g.min_top1_agreement}")
    return failures
