"""report.json (machine-readable), report.md and report.html (people), plus the terminal table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from qconvert.verify.gates import end_to_end_bound
from qconvert.verify.html import render_html
from qconvert.verify.precision import precision_lines

__all__ = ["int8_nodes_cell", "speedup_cell", "summary_table", "write_reports"]


def write_reports(out: Path, report: dict[str, Any]) -> None:
    # Strict JSON: an infinite SQNR (identical outputs) is written "inf", never the non-standard Infinity.
    (out / "report.json").write_text(json.dumps(_finite(report), indent=1, default=str, allow_nan=False) + "\n")
    (out / "report.md").write_text(_markdown(report))
    (out / "report.html").write_text(render_html(report), encoding="utf-8")


def _finite(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return "nan" if math.isnan(o) else ("inf" if o > 0 else "-inf")
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    return o


def speedup_cell(t: dict[str, Any]) -> str:
    """'1.80x at b1, 3.40x at b16': float ms over int8 ms per measured batch size, in the artifact's own runtime."""
    by_batch = (t.get("latency") or {}).get("by_batch") or {}
    cells = [f"{v['speedup']:.2f}x at b{b}" for b, v in sorted(by_batch.items(), key=lambda kv: int(kv[0])) if v.get("speedup")]
    return ", ".join(cells) or "-"


def int8_nodes_cell(t: dict[str, Any]) -> str:
    """'30 of 30': compute nodes the runtime ran in int8, of all compute nodes (where it can tell)."""
    lat = t.get("latency") or {}
    if lat.get("int8_nodes") is None:
        return "-"
    return f"{lat['int8_nodes']} of {lat['int8_nodes'] + (lat.get('float_nodes') or 0)}"


def _fmt(v: Any, spec: str = ".2f") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else format(v, spec)
    return str(v)


def summary_table(report: dict[str, Any]) -> str:
    """The per-target table: accuracy, parity vs simulation and vs float."""
    head = ("| target | executed | accuracy % | drop pp | max err vs sim (LSB) | SQNR vs float (dB) | top-1 agree | size KiB "
            "| int8 speed-up vs float (same runtime) | compute nodes in int8 |")
    rows = [head, "|" + "---|" * 10]
    fa = report["float"]["accuracy"]
    rows.append(f"| float (torch) | yes | {_fmt(fa)} | - | - | - | - | - | - | - |")
    for name, t in report["targets"].items():
        if not t.get("executed"):
            rows.append(f"| {name} | no | - | - | - | - | - | {_fmt((t.get('size_bytes') or 0) / 1024, '.1f')} | - | - |")
            continue
        acc = t.get("accuracy")
        drop = fa - acc if fa is not None and acc is not None else None
        sim, flt = t["vs_simulation"], t["vs_float"]
        rows.append(
            f"| {name} | {'yes, ' + t['executed_in'] if t.get('executed_in') else 'yes'} | {_fmt(acc)} | {_fmt(drop)} | {_fmt(sim['max_lsb_error'], '.3f')} | {_fmt(flt['sqnr_db'])} | "
            f"{_fmt(flt['top1_agreement'], '.4f')} | {_fmt((t.get('size_bytes') or 0) / 1024, '.1f')} | {speedup_cell(t)} | {int8_nodes_cell(t)} |"
        )
    return "\n".join(rows)


def _latency_lines(t: dict[str, Any]) -> list[str]:
    lat = t.get("latency")
    if not lat:
        return ["- latency: not measured (--no-latency)" if t.get("latency_skipped") else "- latency: not measured for this target"]
    per_batch = "; ".join(f"batch {b}: int8 {_fmt(v['int8_ms'], '.3g')} ms, float {_fmt(v['float_ms'], '.3g')} ms "
                          f"({_fmt(v['speedup'])}x)" for b, v in sorted(lat["by_batch"].items(), key=lambda kv: int(kv[0])))
    lines = [f"- latency in {lat['runtime']} (10th percentile of runs, int8 and float timed in turn): {per_batch}"]
    if lat.get("int8_nodes") is not None:
        floats = f" (float: {', '.join(lat['float_ops'])})" if lat.get("float_ops") else ""
        lines.append(f"- compute nodes run in int8: {int8_nodes_cell(t)}{floats}")
    return lines


def _layer_parity_lines(t: dict[str, Any]) -> list[str]:
    lp = t.get("layer_parity")
    if not lp:
        if "layer_parity" not in t:
            return []
        depth = int(t.get("parity_depth") or 0)
        bound = end_to_end_bound(float(t["tolerance_lsb"]), depth, layers_checked=False)
        return [(f"- per-layer parity: not available for this runtime (checked end to end only: allowed {bound:.2f} steps "
                 f"at depth {depth}, or drift well below the quantization noise)")]
    first = lp["first_divergence"]
    lines = [(f"- per-layer parity ({lp['compared']} quantized tensors, {lp['samples']} samples, each layer fed the runtime's "
              f"inputs): worst {_fmt(lp['max_lsb_error'], '.0f')} steps (tolerance {lp['tolerance_lsb']}); end to end typically within "
              f"{_fmt(lp['end_to_end_bound_lsb'], '.2f')} steps at depth {lp['depth']}"),
             f"- first divergence: {first['text']}" if first else "- first divergence: none"]
    bad = [r for r in lp["layers"] if r["status"] not in ("ok", "not_exposed")][:10]
    if bad:
        lines += ["", "| # | op | layer | tensor | status | max steps |", "|---|---|---|---|---|---|"]
        index = {r["node"]: i for i, r in enumerate(lp["layers"])}
        lines += [f"| {index[r['node']]} | {r['op']} | `{r['module'] or '-'}` | `{r['tensor']}` | {r['status']} | "
                  f"{_fmt(r['max_steps'], '.0f')} |" for r in bad]
        lines.append("")
    return lines


def _output_lines(t: dict[str, Any]) -> list[str]:
    """One line per model output, for a model with several (each is verified and gated)."""
    outs = t.get("outputs") or []
    if len(outs) < 2:
        return []
    lines = [f"- outputs ({len(outs)}, each verified; accuracy and agreement on the first):"]
    for o in outs:
        s, f = o["vs_simulation"], o["vs_float"]
        lines.append(f"  - `{o['name']}`: vs simulation {_fmt(s['max_lsb_error'], '.3f')} LSB, vs float SQNR {_fmt(f['sqnr_db'])} dB, "
                     f"cosine {_fmt(f['cosine'], '.6f')}")
    return lines


def _optimize_for_lines(t: dict[str, Any]) -> list[str]:
    o = t.get("optimize_for")
    if not o:
        return []
    where = f" on {o['device']}" if o.get("device") else ""
    line = (f"- optimized for {o['optimize_for']} ({o['source']}){where}: activations `{o['activations']}`, "
            f"weights `{o['weights']}`, Q/DQ placement `{o['placement']}`")
    if o.get("fast_types") and o["fast_types"].get("why"):
        line += f"; fast types there: {o['fast_types']['why']}"
    return [line]


def _markdown(report: dict[str, Any]) -> str:
    c, e = report["calibration"], report["eval"]
    lines = [
        "# qconvert build report",
        "",
        f"- model: `{report['model']}`",
        f"- recipe: `{report['recipe']}` (file sha256 `{(report.get('recipe_file_sha256') or '-')[:12]}`)",
        f"- ranges: {c['ranges']} (method `{c['method']}`, {c['samples'] or '-'} samples, {c['tensors']} tensors)",
        f"- evaluated on: `{e['data']}` ({e['samples']} samples{'' if e['held_out'] else ', calibration data: no --eval-data given'})",
        f"- qconvert {report['qconvert_version']}, torch {report['torch_version']}",
        "",
        summary_table(report),
        "",
    ]
    for name, t in report["targets"].items():
        lines.append(f"## {name}")
        lines.append(f"- artifact: `{t['artifact']}`, runtime: {t['runtime']}")
        if not t.get("executed"):
            lines.append("- **not executed here**")
        else:
            s = t["vs_simulation"]
            lines.append(
                f"- vs simulation: max {_fmt(s['max_abs_error'], '.3g')} abs = {_fmt(s['max_lsb_error'], '.3f')} LSB "
                f"(tolerance {t['tolerance_lsb']} LSB), SQNR {_fmt(s['sqnr_db'])} dB, cosine {_fmt(s['cosine'], '.6f')}"
            )
            lines += _layer_parity_lines(t)
            f = t["vs_float"]
            lines.append(f"- vs float: SQNR {_fmt(f['sqnr_db'])} dB, max abs {_fmt(f['max_abs_error'], '.3g')}, cosine {_fmt(f['cosine'], '.6f')}")
            lines += _output_lines(t)
            lines += _latency_lines(t)
        lines += _optimize_for_lines(t)
        if t.get("recipe_hash"):
            lines.append(f"- effective recipe sha256 `{t['recipe_hash'][:12]}` (the manifest's recipe_hash)")
        if t.get("gated_on"):
            lines.append(f"- gates judged: {t['gated_on']}")
        worst = (t.get("layers") or {}).get("layers") or []
        if worst:
            lines.append("- worst layers (SQNR vs float): " + ", ".join(f"`{w['module'] or w['key']}` {_fmt(w['sqnr_db'])} dB" for w in worst[:3]))
        for n in t["notes"]:
            lines.append(f"- note: {n}")
        lines.append("")
    fb = report.get("fallback")
    if fb:
        kept = ", ".join(f"`{n}`" for n in fb["layers"]) or "none needed"
        lines.append(f"## automatic fallback\n- kept at {fb['keep']}: {kept}" + (f" (recipe written to `{fb['recipe_file']}`)" if fb["recipe_file"] else ""))
        screened = ", ".join(t["target"] for t in fb["steps"][0]["targets"]) if fb["steps"] else ""
        ranked = f"; layers ranked under {fb['ranked_on']}'s plan" if fb.get("ranked_on") else ""
        lines.append(f"- screened per target ({screened}): each variant simulated with that target's schemes, constraints "
                     f"and Q/DQ placement and judged by its gates{ranked}")
        lines.append("")
    lines += precision_lines(report)
    for w in report.get("warnings") or []:
        lines.append(f"- warning: {w}")
    g = report.get("gates", {})
    lines.append("## gates")
    lines.append("- all passed" if g.get("passed", True) else "\n".join(f"- FAILED: {f}" for f in g["failures"]))
    return "\n".join(lines) + "\n"
