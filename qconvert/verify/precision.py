"""One build, several activation widths side by side: ``--compare-precision 8,16`` (recipe ``compare_precision``).

TI's advice when 8 bits loses accuracy is to try 16 bits first: if 16-bit activations
recover the accuracy, the problem is the 8-bit grid, not the model or the data. The main
build stays what the recipe says; each other width is quantized from the same statistics,
emitted into ``OUT/precision/a<bits>/<target>/`` and verified in the runtime like any build,
and the report puts the widths side by side per target. Gates judge the main build only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from qconvert.errors import ConstraintError
from qconvert.recipe.model import Recipe

__all__ = ["compare_precision", "precision_lines", "precision_variant"]

#: Builds one target's entry from a recipe into a directory: (recipe, target name, directory) -> report entry.
BuildVariant = Callable[[Recipe, str, Path], dict[str, Any]]


def precision_variant(recipe: Recipe, bits: int) -> Recipe:
    """``recipe`` with its default activation scheme at ``bits`` (per-layer overrides keep theirs)."""
    return recipe.model_copy(update={"activations": recipe.activations.model_copy(update={"bits": bits}), "compare_precision": None})


def _row(bits: int, entry: dict[str, Any], where: str, float_accuracy: float | None) -> dict[str, Any]:
    executed = bool(entry.get("executed"))
    acc = entry.get("accuracy") if executed else None
    flt = entry.get("vs_float") or {}
    sim = entry.get("vs_simulation") or {}
    return {
        "activation_bits": bits,
        "artifact": str(Path(where) / entry["artifact"]) if where else entry["artifact"],
        "executed": executed,
        "accuracy": acc,
        "accuracy_drop_pp": float_accuracy - acc if float_accuracy is not None and acc is not None else None,
        "simulation_accuracy": entry.get("simulation_accuracy"),
        "sqnr_db": flt.get("sqnr_db"),
        "top1_agreement": flt.get("top1_agreement"),
        "parity_lsb": sim.get("max_lsb_error"),
        "tolerance_lsb": entry.get("tolerance_lsb"),
        "adapted": [n for n in entry.get("notes", []) if n.endswith("; adapted")][:1],
        "refused": None,
    }


def compare_precision(widths: tuple[int, ...], recipe: Recipe, float_accuracy: float | None, main: dict[str, dict[str, Any]],
                      out: Path, build_variant: BuildVariant) -> dict[str, Any]:
    """Per target, one row per activation width in ``widths``; the recipe's own width reuses the main build.

    A target that cannot represent a width (``on_unsupported: error``) gets a row with the refusal.
    """
    rows: dict[str, list[dict[str, Any]]] = {t: [] for t in main}
    for bits in dict.fromkeys(widths):
        where = "" if bits == recipe.activations.bits else f"precision/a{bits}"
        for target, entry in main.items():
            if not where:
                rows[target].append(_row(bits, entry, "", float_accuracy))
                continue
            (out / where).mkdir(parents=True, exist_ok=True)
            try:
                variant = build_variant(precision_variant(recipe, bits), target, out / where)
            except ConstraintError as e:
                rows[target].append({**_row(bits, {"artifact": "", "notes": []}, "", float_accuracy), "artifact": None, "refused": str(e)})
                continue
            rows[target].append(_row(bits, variant, where, float_accuracy))
    return {"activation_bits": list(dict.fromkeys(widths)), "targets": rows}


def _cell(v: Any, spec: str = ".2f") -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return format(v, spec)


def precision_lines(report: dict[str, Any]) -> list[str]:
    """The markdown table of a build's precision comparison (none when not asked for)."""
    p = report.get("precision")
    if not p:
        return []
    lines = ["## precision comparison (activation bits)", "",
             "| target | activation bits | accuracy % | drop pp | SQNR vs float (dB) | top-1 agree | max err vs sim (LSB) | artifact |",
             "|" + "---|" * 8]
    for target, rows in p["targets"].items():
        for r in rows:
            if r["refused"]:
                lines.append(f"| {target} | {r['activation_bits']} | refused: {r['refused']} | | | | | |")
                continue
            note = f" (adapted: {r['adapted'][0]})" if r["adapted"] else ""
            lines.append(f"| {target} | {r['activation_bits']}{note} | {_cell(r['accuracy'])} | {_cell(r['accuracy_drop_pp'])} | "
                         f"{_cell(r['sqnr_db'])} | {_cell(r['top1_agreement'], '.4f')} | {_cell(r['parity_lsb'], '.3f')} | `{r['artifact']}` |")
    return lines + [""]
