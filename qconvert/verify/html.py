"""report.html: one self-contained page (inline CSS and SVG, no script, no network) for people.

Everything on it is read from the typed ``Report`` that is also written as report.json,
so the page and the JSON cannot disagree; a test reads the numbers back from the page.
"""

from __future__ import annotations

import math
from html import escape

from qconvert.verify.cells import int8_nodes_cell, speedup_cell
from qconvert.verify.gates import METRIC_TEXT
from qconvert.verify.numbers import cell
from qconvert.verify.report_schema import LayerHistogram, LayerParityEntry, LayerSqnr, Report, TargetEntry

__all__ = ["render_html"]

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#1d232a;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #d8dde3}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #d8dde3;padding:4px 8px}
th{background:#f1f4f7;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#0b7a35;font-weight:600}.fail{color:#b42318;font-weight:600}
.verdict{padding:10px 14px;border-radius:6px;margin:12px 0;font-weight:600}
.verdict.pass{background:#e5f6ec}.verdict.fail{background:#fdecea}
.meta{color:#4b5563}.hists{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0}figcaption{font-size:12px;color:#4b5563;max-width:420px}
"""


def render_html(report: Report) -> str:
    """The whole page for one build report."""
    parts = [_header(report), _summary(report), _gates(report), _fallback(report)]
    for name, t in report.targets.items():
        parts.append(_target_section(name, t))
    body = "\n".join(p for p in parts if p)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>qconvert report: {escape(report.model)}</title>"
            f"<style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def _fmt(v: float | None, spec: str = ".2f", unit: str = "") -> str:
    return cell(v, spec, unit)


def _header(r: Report) -> str:
    c, e, g = r.calibration, r.eval, r.gates
    verdict = ("<div class=\"verdict pass\">all gates passed</div>" if g.passed else
               "<div class=\"verdict fail\">gates failed:<ul>" + "".join(f"<li>{escape(f)}</li>" for f in g.failures) + "</ul></div>")
    return (f"<h1>qconvert build report</h1>{verdict}<ul class=\"meta\">"
            f"<li>model <code>{escape(r.model)}</code></li>"
            f"<li>recipe <code>{escape(r.recipe)}</code> (file sha256 <code>{escape((r.recipe_file_sha256 or '-')[:12])}</code>)</li>"
            f"<li>ranges {escape(c.ranges)}, method <code>{escape(c.method)}</code>, {escape(str(c.samples or '-'))} samples, {c.tensors} "
            "tensors</li>"
            f"<li>evaluated on <code>{escape(e.data)}</code>, {e.samples} samples{'' if e.held_out else ' (calibration data)'}</li>"
            f"<li>qconvert {escape(r.qconvert_version)}, torch {escape(r.torch_version)}</li></ul>")


def _latency(t: TargetEntry) -> str:
    speed = speedup_cell(t)
    nodes = int8_nodes_cell(t)
    return escape(speed if nodes == "-" else f"{speed}; {nodes} compute nodes in int8")


_COLUMNS = ("target", "executed in", "float accuracy %", "artifact accuracy %", "drop pp", "SQNR vs float dB",
            "top-1 agreement", "max error vs simulation LSB", "int8 speed-up vs float (same runtime)", "size KiB")


def _summary(r: Report) -> str:
    fa = r.float.accuracy
    rows = []
    for name, t in r.targets.items():
        size = _fmt(t.size_bytes / 1024, ".1f") if t.size_bytes is not None else "-"
        if not t.executed or t.vs_float is None or t.vs_simulation is None:
            cells = [escape(name), "not executed here", _fmt(fa), "-", "-", "-", "-", "-", "-", size]
        else:
            acc = t.accuracy
            drop = fa - acc if fa is not None and acc is not None else None
            flt, sim = t.vs_float, t.vs_simulation
            cells = [escape(name), escape(t.executed_in or f"yes, {t.runtime}"), _fmt(fa), _fmt(acc), _fmt(drop),
                     _fmt(flt.sqnr_db), _fmt(flt.top1_agreement, ".4f"), _fmt(sim.max_lsb_error, ".3f"), _latency(t), size]
        rows.append("<tr>" + "".join(f"<td{'' if i < 2 else ' class=num'}>{c}</td>" for i, c in enumerate(cells)) + "</tr>")
    head = "".join(f"<th>{c}</th>" for c in _COLUMNS)
    return f"<h2>targets</h2><table id=\"targets\"><tr>{head}</tr>{''.join(rows)}</table>"


def _gates(r: Report) -> str:
    checks = r.gates.checks
    if not checks:
        return "<h2>gates</h2><p>no gates set in the recipe</p>"
    rows = []
    for c in checks:
        words, unit, spec, _ = METRIC_TEXT[c.metric]
        verdict = "pass" if c.passed else "fail"
        rows.append(f"<tr><td>{escape(c.target)}</td><td>{escape(words)}{escape(unit)}</td><td class=num>{_fmt(c.value, spec)}</td>"
                    f"<td class=num>{_fmt(c.limit, 'g')}</td><td class=\"{verdict}\">{verdict.upper() if not c.passed else verdict}</td>"
                    f"<td>{escape(c.figure or '-')}</td></tr>")
    return ("<h2>gates</h2><table id=\"gates\"><tr><th>target</th><th>metric</th><th>value</th><th>limit</th><th></th>"
            f"<th>figure judged</th></tr>{''.join(rows)}</table>")


def _fallback(r: Report) -> str:
    fb = r.fallback
    if fb is None:
        return ""
    kept = ", ".join(f"<code>{escape(n)}</code>" for n in fb.layers) or "none needed"
    steps = "".join(
        f"<tr><td>{escape(', '.join(s.layers) or '(plain PTQ)')}</td><td class=num>{_fmt(s.simulated.accuracy)}</td>"
        f"<td class=num>{_fmt(s.simulated.sqnr_db)}</td><td>{'pass' if s.simulation_passed else 'fail'}</td>"
        f"<td>{escape('-' if s.built is None else ('pass' if s.built else 'fail: ' + '; '.join(s.failures)))}</td></tr>"
        for s in fb.steps)
    written = f", written to <code>{escape(fb.recipe_file)}</code>" if fb.recipe_file else ""
    return (f"<h2>automatic fallback</h2><p>kept at {escape(fb.keep)}: {kept}{written}</p>"
            "<table id=\"fallback\"><tr><th>kept at higher precision</th><th>simulated accuracy %</th><th>simulated SQNR dB</th>"
            f"<th>simulation vs gates</th><th>artifacts vs gates</th></tr>{steps}</table>")


def _target_section(name: str, t: TargetEntry) -> str:
    parts = [f"<h2>{escape(name)}</h2><p class=meta>artifact <code>{escape(t.artifact)}</code>, runtime {escape(t.runtime)}</p>"]
    parts += _layer_parity(t.layer_parity)
    layers = t.layers
    if layers is not None and layers.layers:
        parts.append(f"<h3>per-layer SQNR vs float, worst first ({layers.samples} samples)</h3>")
        parts.append(_bar_chart(layers.layers))
        parts.append("<h3>activation histograms of the worst layers (log count, chosen clip range marked)</h3><div class=hists>")
        parts += [_histogram_svg(h) for h in layers.histograms]
        parts.append("</div>")
    if t.notes:
        parts.append("<ul>" + "".join(f"<li>{escape(n)}</li>" for n in t.notes) + "</ul>")
    return "\n".join(parts)


def _layer_parity(lp: LayerParityEntry | None) -> list[str]:
    """Per-layer parity: the verdict, and the layers that fail (first divergence first)."""
    if lp is None:
        return []
    first = lp.first_divergence
    verdict = f"first divergence: {escape(first.text)}" if first else "no layer diverges"
    parts = [f"<h3>per-layer parity ({lp.compared} quantized tensors, each fed the runtime's inputs)</h3>",
             (f"<p id=layer-parity>worst {_fmt(lp.max_lsb_error, '.0f')} steps, tolerance {_fmt(lp.tolerance_lsb, 'g')}; "
              f"end to end typically within {_fmt(lp.end_to_end_bound_lsb, '.2f')} steps at depth {lp.depth}; {verdict}</p>")]
    bad = [r for r in lp.layers if r.status not in ("ok", "not_exposed")][:10]
    if bad:
        rows = "".join(f"<tr><td>{escape(r.op)}</td><td><code>{escape(r.module or r.tensor)}</code></td>"
                       f"<td>{escape(r.status)}</td><td>{_fmt(r.max_steps, '.0f')}</td></tr>" for r in bad)
        parts.append(f"<table id=layer-parity-failures><tr><th>op</th><th>layer</th><th>status</th><th>max steps</th></tr>{rows}</table>")
    return parts


def _bar_chart(rows: list[LayerSqnr]) -> str:
    label_w, bar_w, row_h = 300, 520, 22
    finite = [r.sqnr_db for r in rows if r.sqnr_db is not None and math.isfinite(r.sqnr_db)]
    top = max([60.0] + finite)
    out = [f"<svg class=layers xmlns=\"http://www.w3.org/2000/svg\" width=\"{label_w + bar_w + 90}\" height=\"{row_h * len(rows) + 8}\">"]
    for i, r in enumerate(rows):
        v = r.sqnr_db
        y = 4 + i * row_h
        frac = 1.0 if v is None or not math.isfinite(v) else max(0.0, min(v / top, 1.0))
        color = "#b42318" if v is not None and v < 20 else "#d97706" if v is not None and v < 30 else "#2563eb"
        label = f"{r.module or '<input>'} ({r.key})"
        out.append(f"<g class=bar data-key=\"{escape(r.key)}\"><title>{escape(label)}: {_fmt(v, '.2f', ' dB')}</title>"
                   f"<text x=\"{label_w - 6}\" y=\"{y + 15}\" text-anchor=\"end\" font-size=\"12\">{escape(label)}</text>"
                   f"<rect x=\"{label_w}\" y=\"{y}\" width=\"{frac * bar_w:.1f}\" height=\"{row_h - 6}\" fill=\"{color}\"/>"
                   f"<text class=value x=\"{label_w + frac * bar_w + 6:.1f}\" y=\"{y + 15}\" "
                   f"font-size=\"12\">{_fmt(v, '.2f', ' dB')}</text></g>")
    out.append("</svg>")
    return "".join(out)


def _histogram_svg(h: LayerHistogram) -> str:
    w, ht, pad = 420, 160, 24
    counts, lo, hi = h.bins.counts, h.bins.lo, h.bins.hi
    logs = [math.log10(1 + c) for c in counts]
    peak = max(logs) or 1.0
    bw = (w - 2 * pad) / max(len(counts), 1)

    def x_of(v: float) -> float:
        return pad + (v - lo) / (hi - lo) * (w - 2 * pad) if hi > lo else pad

    bars = "".join(f"<rect x=\"{pad + i * bw:.1f}\" y=\"{ht - pad - l / peak * (ht - 2 * pad):.1f}\" width=\"{max(bw - 1, 1):.1f}\" "
                   f"height=\"{l / peak * (ht - 2 * pad):.1f}\" fill=\"#64748b\"/>" for i, l in enumerate(logs))
    c0, c1 = (x_of(v) for v in h.clip)
    marks = (f"<rect x=\"{c0:.1f}\" y=\"{pad - 6}\" width=\"{max(c1 - c0, 1):.1f}\" height=\"{ht - 2 * pad + 6}\" fill=\"#2563eb\" "
             "fill-opacity=\"0.08\"/>"
             f"<line class=clip x1=\"{c0:.1f}\" x2=\"{c0:.1f}\" y1=\"{pad - 6}\" y2=\"{ht - pad}\" stroke=\"#b42318\" stroke-width=\"2\"/>"
             f"<line class=clip x1=\"{c1:.1f}\" x2=\"{c1:.1f}\" y1=\"{pad - 6}\" y2=\"{ht - pad}\" stroke=\"#b42318\" stroke-width=\"2\"/>")
    axis = (f"<text x=\"{pad}\" y=\"{ht - 6}\" font-size=\"11\">{_fmt(lo, '.3g')}</text>"
            f"<text x=\"{w - pad}\" y=\"{ht - 6}\" font-size=\"11\" text-anchor=\"end\">{_fmt(hi, '.3g')}</text>")
    label = f"{h.module or '<input>'} ({h.key})"
    caption = (f"{escape(label)}: observed [{_fmt(h.observed[0], '.4g')}, {_fmt(h.observed[1], '.4g')}], "
               f"clip ({escape(h.method)}) [{_fmt(h.clip[0], '.4g')}, {_fmt(h.clip[1], '.4g')}], "
               f"integer grid [{_fmt(h.grid[0], '.4g')}, {_fmt(h.grid[1], '.4g')}]")
    return (f"<figure data-key=\"{escape(h.key)}\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{ht}\">"
            f"<rect width=\"{w}\" height=\"{ht}\" fill=\"#fafbfc\"/>{bars}{marks}{axis}</svg><figcaption>{caption}</figcaption></figure>")
