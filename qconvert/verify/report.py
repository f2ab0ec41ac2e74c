"""report.json (machine-readable), report.md and report.html (people), plus the terminal table.

All three are written from one typed ``Report``: report.json is its JSON dump, the markdown and
the page read its attributes, so they cannot disagree.
"""

from __future__ import annotations

from pathlib import Path

from qconvert.verify.cells import by_batch, int8_nodes_cell, speedup_cell
from qconvert.verify.gates import end_to_end_bound
from qconvert.verify.html import render_html
from qconvert.verify.numbers import cell
from qconvert.verify.precision import precision_lines
from qconvert.verify.report_schema import Report, TargetEntry

__all__ = ["int8_nodes_cell", "report_json", "speedup_cell", "summary_table", "write_reports"]


def report_json(report: Report) -> str:
    """The text of report.json: strict JSON (an infinite SQNR is the string "inf", never the non-standard Infinity)."""
    return report.model_dump_json(indent=1) + "\n"


def write_reports(out: Path, report: Report) -> None:
    (out / "report.json").write_text(report_json(report))
    (out / "report.md").write_text(_markdown(report))
    (out / "report.html").write_text(render_html(report), encoding="utf-8")


def summary_table(report: Report) -> str:
    """The per-target table: accuracy, parity vs simulation and vs float."""
    head = ("| target | executed | accuracy % | drop pp | max err vs sim (LSB) | SQNR vs float (dB) | top-1 agree | size KiB "
            "| int8 speed-up vs float (same runtime) | compute nodes in int8 |")
    rows = [head, "|" + "---|" * 10]
    fa = report.float.accuracy
    rows.append(f"| float (torch) | yes | {cell(fa)} | - | - | - | - | - | - | - |")
    for name, t in report.targets.items():
        size = cell((t.size_bytes or 0) / 1024, ".1f")
        if not t.executed or t.vs_simulation is None or t.vs_float is None:
            rows.append(f"| {name} | no | - | - | - | - | - | {size} | - | - |")
            continue
        acc = t.accuracy
        drop = fa - acc if fa is not None and acc is not None else None
        sim, flt = t.vs_simulation, t.vs_float
        rows.append(
            f"| {name} | {'yes, ' + t.executed_in if t.executed_in else 'yes'} | {cell(acc)} | {cell(drop)} | "
            f"{cell(sim.max_lsb_error, '.3f')} | "
            f"{cell(flt.sqnr_db)} | {cell(flt.top1_agreement, '.4f')} | {size} | {speedup_cell(t)} | {int8_nodes_cell(t)} |"
        )
    return "\n".join(rows)


def _latency_lines(t: TargetEntry) -> list[str]:
    lat = t.latency
    if lat is None:
        return ["- latency: not measured (--no-latency)" if t.latency_skipped else "- latency: not measured for this target"]
    per_batch = "; ".join(f"batch {b}: int8 {cell(i, '.3g')} ms, float {cell(f, '.3g')} ms ({cell(s)}x)" for b, i, f, s in by_batch(t))
    lines = [f"- latency in {lat.runtime} (10th percentile of runs, int8 and float timed in turn): {per_batch}"]
    if lat.int8_nodes is not None:
        floats = f" (float: {', '.join(lat.float_ops)})" if lat.float_ops else ""
        lines.append(f"- compute nodes run in int8: {int8_nodes_cell(t)}{floats}")
    return lines


def _layer_parity_lines(t: TargetEntry) -> list[str]:
    lp = t.layer_parity
    if lp is None:
        depth = t.parity_depth or 0
        bound = end_to_end_bound(t.tolerance_lsb, depth, layers_checked=False)
        return [(f"- per-layer parity: not available for this runtime (checked end to end only: allowed {bound:.2f} steps "
                 f"at depth {depth}, or drift well below the quantization noise)")]
    first = lp.first_divergence
    lines = [(f"- per-layer parity ({lp.compared} quantized tensors, {lp.samples} samples, each layer fed the runtime's "
              f"inputs): worst {cell(lp.max_lsb_error, '.0f')} steps (tolerance {cell(lp.tolerance_lsb, 'g')}); end to end typically "
              "within "
              f"{cell(lp.end_to_end_bound_lsb, '.2f')} steps at depth {lp.depth}"),
             f"- first divergence: {first.text}" if first else "- first divergence: none"]
    bad = [r for r in lp.layers if r.status not in ("ok", "not_exposed")][:10]
    if bad:
        lines += ["", "| # | op | layer | tensor | status | max steps |", "|---|---|---|---|---|---|"]
        index = {r.node: i for i, r in enumerate(lp.layers)}
        lines += [f"| {index[r.node]} | {r.op} | `{r.module or '-'}` | `{r.tensor}` | {r.status} | {cell(r.max_steps, '.0f')} "
                  "|" for r in bad]
        lines.append("")
    return lines


def _output_lines(t: TargetEntry) -> list[str]:
    """One line per model output, for a model with several (each is verified and gated)."""
    outs = t.outputs or []
    if len(outs) < 2:
        return []
    lines = [f"- outputs ({len(outs)}, each verified; accuracy and agreement on the first):"]
    for o in outs:
        s, f = o.vs_simulation, o.vs_float
        lines.append(f"  - `{o.name}`: vs simulation {cell(s.max_lsb_error, '.3f')} LSB, vs float SQNR {cell(f.sqnr_db)} dB, "
                     f"cosine {cell(f.cosine, '.6f')}")
    return lines


def _optimize_for_lines(t: TargetEntry) -> list[str]:
    o = t.optimize_for
    if o is None:
        return []
    where = f" on {o.device}" if o.device else ""
    line = (f"- optimized for {o.optimize_for} ({o.source}){where}: activations `{o.activations}`, "
            f"weights `{o.weights}`, Q/DQ placement `{o.placement}`")
    if o.fast_types is not None and o.fast_types.why:
        line += f"; fast types there: {o.fast_types.why}"
    return [line]


def _target_lines(name: str, t: TargetEntry) -> list[str]:
    lines = [f"## {name}", f"- artifact: `{t.artifact}`, runtime: {t.runtime}"]
    if not t.executed or t.vs_simulation is None or t.vs_float is None:
        lines.append("- **not executed here**")
    else:
        s = t.vs_simulation
        lines.append(f"- vs simulation: max {cell(s.max_abs_error, '.3g')} abs = {cell(s.max_lsb_error, '.3f')} LSB "
                     f"(tolerance {cell(t.tolerance_lsb, 'g')} LSB), SQNR {cell(s.sqnr_db)} dB, cosine {cell(s.cosine, '.6f')}")
        lines += _layer_parity_lines(t)
        f = t.vs_float
        lines.append(f"- vs float: SQNR {cell(f.sqnr_db)} dB, max abs {cell(f.max_abs_error, '.3g')}, cosine {cell(f.cosine, '.6f')}")
        lines += _output_lines(t)
        lines += _latency_lines(t)
    lines += _optimize_for_lines(t)
    if t.recipe_hash:
        lines.append(f"- effective recipe sha256 `{t.recipe_hash[:12]}` (the manifest's recipe_hash)")
    if t.gated_on:
        lines.append(f"- gates judged: {t.gated_on}")
    worst = t.layers.layers if t.layers is not None else []
    if worst:
        lines.append("- worst layers (SQNR vs float): " + ", ".join(f"`{w.module or w.key}` {cell(w.sqnr_db)} dB" for w in worst[:3]))
    lines += [f"- note: {n}" for n in t.notes]
    return lines + [""]


def _markdown(report: Report) -> str:
    c, e = report.calibration, report.eval
    lines = [
        "# qconvert build report",
        "",
        f"- model: `{report.model}`",
        f"- recipe: `{report.recipe}` (file sha256 `{(report.recipe_file_sha256 or '-')[:12]}`)",
        f"- ranges: {c.ranges} (method `{c.method}`, {c.samples or '-'} samples, {c.tensors} tensors)",
        f"- evaluated on: `{e.data}` ({e.samples} samples{'' if e.held_out else ', calibration data: no --eval-data given'})",
        f"- qconvert {report.qconvert_version}, torch {report.torch_version}",
        "",
        summary_table(report),
        "",
    ]
    for name, t in report.targets.items():
        lines += _target_lines(name, t)
    fb = report.fallback
    if fb is not None:
        kept = ", ".join(f"`{n}`" for n in fb.layers) or "none needed"
        lines.append(f"## automatic fallback\n- kept at {fb.keep}: "
                     f"{kept}" + (f" (recipe written to `{fb.recipe_file}`)" if fb.recipe_file else ""))
        screened = ", ".join(t.target for t in fb.steps[0].targets) if fb.steps else ""
        ranked = f"; layers ranked under {fb.ranked_on}'s plan" if fb.ranked_on else ""
        lines.append(f"- screened per target ({screened}): each variant simulated with that target's schemes, constraints "
                     f"and Q/DQ placement and judged by its gates{ranked}")
        lines.append("")
    lines += precision_lines(report.precision)
    lines += [f"- warning: {w}" for w in report.warnings]
    g = report.gates
    lines.append("## gates")
    lines.append("- all passed" if g.passed else "\n".join(f"- FAILED: {f}" for f in g.failures))
    return "\n".join(lines) + "\n"
