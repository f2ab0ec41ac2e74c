"""One build, several activation widths side by side: ``--compare-precision 8,16`` (recipe ``compare_precision``).

TI's advice when 8 bits loses accuracy is to try 16 bits first: if 16-bit activations
recover the accuracy, the problem is the 8-bit grid, not the model or the data. The main
build stays what the recipe says; each other width is quantized from the same statistics,
emitted into ``OUT/precision/a<bits>/<target>/`` and verified in the runtime like any build,
and the report puts the widths side by side per target. Gates judge the main build only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from qconvert.errors import ConstraintError
from qconvert.recipe.model import Recipe
from qconvert.verify.numbers import cell
from qconvert.verify.report_schema import PrecisionComparison, PrecisionRow, TargetEntry

__all__ = ["compare_precision", "precision_lines", "precision_variant"]

#: Builds one target's entry from a recipe into a directory: (recipe, target name, directory) -> report entry.
BuildVariant = Callable[[Recipe, str, Path], TargetEntry]


def precision_variant(recipe: Recipe, bits: int) -> Recipe:
    """``recipe`` with its default activation scheme at ``bits`` (per-layer overrides keep theirs)."""
    return recipe.model_copy(update={"activations": recipe.activations.model_copy(update={"bits": bits}), "compare_precision": None})


def _row(bits: int, entry: TargetEntry, where: str, float_accuracy: float | None) -> PrecisionRow:
    acc = entry.accuracy if entry.executed else None
    flt, sim = entry.vs_float, entry.vs_simulation
    return PrecisionRow(
        activation_bits=bits,
        artifact=str(Path(where) / entry.artifact) if where else entry.artifact,
        executed=entry.executed,
        accuracy=acc,
        accuracy_drop_pp=float_accuracy - acc if float_accuracy is not None and acc is not None else None,
        simulation_accuracy=entry.simulation_accuracy,
        sqnr_db=flt.sqnr_db if flt is not None else None,
        top1_agreement=flt.top1_agreement if flt is not None else None,
        parity_lsb=sim.max_lsb_error if sim is not None else None,
        tolerance_lsb=entry.tolerance_lsb,
        adapted=[n for n in entry.notes if n.endswith("; adapted")][:1],
        refused=None,
    )


def _refused(bits: int, why: str) -> PrecisionRow:
    return PrecisionRow(activation_bits=bits, artifact=None, executed=False, accuracy=None, accuracy_drop_pp=None, simulation_accuracy=None,
                        sqnr_db=None, top1_agreement=None, parity_lsb=None, tolerance_lsb=None, adapted=[], refused=why)


def compare_precision(widths: tuple[int, ...], recipe: Recipe, float_accuracy: float | None, main: Mapping[str, TargetEntry],
                      out: Path, build_variant: BuildVariant) -> PrecisionComparison:
    """Per target, one row per activation width in ``widths``; the recipe's own width reuses the main build.

    A target that cannot represent a width (``on_unsupported: error``) gets a row with the refusal.
    """
    rows: dict[str, list[PrecisionRow]] = {t: [] for t in main}
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
                rows[target].append(_refused(bits, str(e)))
                continue
            rows[target].append(_row(bits, variant, where, float_accuracy))
    return PrecisionComparison(activation_bits=list(dict.fromkeys(widths)), targets=rows)


def precision_lines(p: PrecisionComparison | None) -> list[str]:
    """The markdown table of a build's precision comparison (none when not asked for)."""
    if p is None:
        return []
    lines = ["## precision comparison (activation bits)", "",
             "| target | activation bits | accuracy % | drop pp | SQNR vs float (dB) | top-1 agree | max err vs sim (LSB) | artifact |",
             "|" + "---|" * 8]
    for target, rows in p.targets.items():
        for r in rows:
            if r.refused:
                lines.append(f"| {target} | {r.activation_bits} | refused: {r.refused} | | | | | |")
                continue
            note = f" (adapted: {r.adapted[0]})" if r.adapted else ""
            lines.append(f"| {target} | {r.activation_bits}{note} | {cell(r.accuracy)} | {cell(r.accuracy_drop_pp)} | "
                         f"{cell(r.sqnr_db)} | {cell(r.top1_agreement, '.4f')} | {cell(r.parity_lsb, '.3f')} | `{r.artifact}` |")
    return lines + [""]
