"""report.json follows its committed schema; report.html shows report.json's numbers and renders in Chromium."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from qconvert.verify.layerwise import rebin
from qconvert.verify.manifest import Manifest, QuantizationEntry, manifest_json_schema_text
from qconvert.verify.report import report_json
from qconvert.verify.report_schema import Report, report_json_schema_text

ROOT = Path(__file__).resolve().parents[1]


def test_committed_report_schema_matches_the_models() -> None:
    assert (ROOT / "schemas" / "report.schema.json").read_text() == report_json_schema_text(), "run 'make schema'"


def test_committed_manifest_schema_matches_the_models() -> None:
    assert (ROOT / "schemas" / "manifest.schema.json").read_text() == manifest_json_schema_text(), "run 'make schema'"


def test_manifest_quantization_entry_has_exactly_the_core_summary_fields() -> None:
    """The torch-free manifest model repeats QParamSummary's fields; a field added to one alone fails here."""
    from dataclasses import fields

    from qconvert.core.quantize import QParamSummary

    assert list(QuantizationEntry.model_fields) == [f.name for f in fields(QParamSummary)]


def test_real_manifest_validates_against_schema_and_reads_back_identical(onnx_build: Path) -> None:
    text = (onnx_build / "onnx" / "manifest.json").read_text()
    jsonschema.validate(json.loads(text), json.loads((ROOT / "schemas" / "manifest.schema.json").read_text()))
    m = Manifest.model_validate_json(text)
    assert m.model_dump_json(indent=1) + "\n" == text  # the model is the whole file: nothing dropped or added on a round trip
    assert m.target == "onnx" and (onnx_build / "onnx" / m.artifact.main_file).is_file()


def test_manifest_details_are_the_plugins_typed_model_and_older_manifests_still_read(onnx_build: Path, tmp_path: Path) -> None:
    from qconvert_onnx.details import OnnxDetails

    from qconvert.errors import BadInputError
    from qconvert.verify.manifest import read_artifact

    artifact = read_artifact(onnx_build / "onnx", OnnxDetails)
    assert isinstance(artifact.details, OnnxDetails) and artifact.details.quantized_tensors
    old = json.loads((onnx_build / "onnx" / "manifest.json").read_text())
    old["artifact"]["extra"] = old["artifact"].pop("details")  # as written before the details were typed
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    assert read_artifact(tmp_path, OnnxDetails).details == artifact.details
    old["artifact"]["extra"]["opset"] = "seventeen"
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    with pytest.raises(BadInputError, match="artifact.details do not fit target 'onnx'"):
        read_artifact(tmp_path, OnnxDetails)


def test_report_json_reads_back_into_the_same_typed_report(onnx_build: Path) -> None:
    text = (onnx_build / "report.json").read_text()
    report = Report.model_validate_json(text)
    assert report_json(report) == text
    t = report.targets["onnx"]
    assert t.executed and t.vs_float is not None and t.layers is not None and t.layer_parity is not None


def test_special_floats_are_strings_in_json_and_floats_in_python() -> None:
    from qconvert.verify.numbers import cell
    from qconvert.verify.report_schema import Comparison

    c = Comparison(samples=2, sqnr_db=math.inf, max_abs_error=0.0, cosine=1.0, top1_agreement=None, max_lsb_error=0.0)
    j = json.loads(c.model_dump_json())
    assert j["sqnr_db"] == "inf" and j["top1_agreement"] is None
    assert Comparison.model_validate(j).sqnr_db == math.inf
    assert [cell(v) for v in (None, math.inf, -math.inf, math.nan, 1.234)] == ["-", "inf", "-inf", "nan", "1.23"]


def test_real_report_validates_against_schema_and_models(onnx_build: Path) -> None:
    report = json.loads((onnx_build / "report.json").read_text())
    jsonschema.validate(report, json.loads((ROOT / "schemas" / "report.schema.json").read_text()))
    Report.model_validate(report)
    broken = {**report, "gates": {"passed": True}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, json.loads((ROOT / "schemas" / "report.schema.json").read_text()))


class _Page(HTMLParser):
    """Cells of table#targets, and (key, label) of each per-layer SQNR bar, in page order."""

    def __init__(self) -> None:
        super().__init__()
        self.table: list[list[str]] = []
        self.bars: list[tuple[str, str]] = []
        self.clip_lines = 0
        self._in_table = self._in_cell = self._in_value = False
        self._bar_key = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._in_table = a.get("id") == "targets"
        elif tag == "tr" and self._in_table:
            self.table.append([])
        elif tag in ("td", "th") and self._in_table:
            self._in_cell = True
            self.table[-1].append("")
        elif tag == "g" and a.get("class") == "bar":
            self._bar_key = a.get("data-key") or ""
        elif tag == "text" and a.get("class") == "value":
            self._in_value = True
        elif tag == "line" and a.get("class") == "clip":
            self.clip_lines += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = False
        elif tag in ("td", "th"):
            self._in_cell = False
        elif tag == "text":
            self._in_value = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.table[-1][-1] += data
        if self._in_value:
            self.bars.append((self._bar_key, data))


def _close(shown: str, value: float | None) -> bool:
    """A number as the page shows it (rounded) against the JSON's."""
    if value is None:
        return shown == "-"
    if math.isinf(value):
        return shown == "inf"
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    return abs(float(shown) - value) <= 0.5 * 10**-decimals + 1e-12


def test_html_numbers_equal_report_json(onnx_build: Path) -> None:
    report = json.loads((onnx_build / "report.json").read_text())
    page = _Page()
    page.feed((onnx_build / "report.html").read_text())
    head, rows = page.table[0], {r[0]: dict(zip(page.table[0], r)) for r in page.table[1:]}
    speed_col = "int8 speed-up vs float (same runtime)"
    assert speed_col in head and "size KiB" in head
    t, row = report["targets"]["onnx"], rows["onnx"]
    assert _close(row["float accuracy %"], report["float"]["accuracy"])
    assert _close(row["artifact accuracy %"], t["accuracy"])
    assert _close(row["drop pp"], report["float"]["accuracy"] - t["accuracy"])
    assert _close(row["SQNR vs float dB"], t["vs_float"]["sqnr_db"])
    assert _close(row["top-1 agreement"], t["vs_float"]["top1_agreement"])
    assert _close(row["max error vs simulation LSB"], t["vs_simulation"]["max_lsb_error"])
    assert _close(row["size KiB"], t["size_bytes"] / 1024)
    # every measured batch size: "<float ms / int8 ms>x at b<batch>", and the int8 node count of onnxruntime
    latency = t["latency"]
    shown = dict(reversed(cell.split("x at b")) for cell in row[speed_col].split(";")[0].split(", "))
    assert sorted(shown, key=int) == sorted(latency["by_batch"], key=int) == ["1", "16"]
    for b, v in latency["by_batch"].items():
        assert _close(shown[b], v["float_ms"] / v["int8_ms"])
    assert f"{latency['int8_nodes']} of {latency['int8_nodes'] + latency['float_nodes']} compute nodes in int8" in row[speed_col]
    # per-layer bars: every quantized activation, worst (lowest SQNR) first, values as in the JSON
    layers = sorted(t["layers"]["layers"], key=lambda e: e["sqnr_db"])
    assert [k for k, _ in page.bars] == [entry["key"] for entry in layers]
    for (_, shown), entry in zip(page.bars, layers):
        assert _close(shown.removesuffix(" dB"), entry["sqnr_db"])
    assert len(layers) >= 8  # digits: input, 5 conv/relu outputs, add, pool, logits
    assert page.clip_lines == 2 * len(t["layers"]["histograms"]) > 0


def test_report_renders_in_headless_chromium(onnx_build: Path, tmp_path: Path) -> None:
    from PIL import Image

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (make setup installs it with apt-get when run as root)")
    shot = tmp_path / "report.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                    "--hide-scrollbars", "--window-size=1200,1600", f"--screenshot={shot}", (onnx_build / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("RGB")).astype(np.int32)
    assert img.shape[:2] == (1600, 1200)
    ink = np.any(img < 200, axis=2)
    assert ink.mean() > 0.01  # text, tables and bars, not a blank page
    bars = (img[:, :, 2] > 180) & (img[:, :, 0] < 80)  # the blue SQNR bars (#2563eb) were drawn
    assert bars.sum() > 2000


def test_rebin_keeps_every_count_and_covers_the_span() -> None:
    hist = np.zeros(4096, np.int64)
    hist[2048:2300] = np.arange(252)  # values in [0, 0.12) on the grid [-1, 1)
    lo, hi, counts = rebin(hist, 1.0, (0.0, 0.5))
    assert sum(counts) == hist.sum() and len(counts) <= 64
    assert lo <= 0.0 and hi >= 0.5 and lo > -0.01
