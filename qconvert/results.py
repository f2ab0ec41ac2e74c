"""Typed results of the Python API, read from the very report a build writes.

``BuildReport`` is built from the same record that becomes ``OUT/report.json``, so its
figures are the file's figures. It holds no torch object: a result can be kept, compared
and printed anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qconvert.verify.gates import GateCheck
from qconvert.verify.metrics import Comparison
from qconvert.verify.output_parity import OutputResult

__all__ = ["BuildReport", "Calibration", "GateVerdict", "LatencyFigures", "TargetReport"]


def _comparison(d: Mapping[str, Any] | None) -> Comparison | None:
    if d is None:
        return None
    nan = math.nan
    return Comparison(int(d["samples"]), nan if d["sqnr_db"] is None else float(d["sqnr_db"]),
                      nan if d["max_abs_error"] is None else float(d["max_abs_error"]),
                      nan if d["cosine"] is None else float(d["cosine"]), d["top1_agreement"], d["max_lsb_error"])


@dataclass(frozen=True)
class LatencyFigures:
    """Milliseconds per batch of the artifact (int8) and the float model, in the target's runtime."""

    runtime: str
    batch_sizes: tuple[int, ...]
    int8_ms: tuple[float, ...]
    float_ms: tuple[float, ...]

    @property
    def speedups(self) -> tuple[float | None, ...]:
        return tuple(f / i if i > 0 else None for i, f in zip(self.int8_ms, self.float_ms))


@dataclass(frozen=True)
class TargetReport:
    """One target's artifact and how it verified in its runtime."""

    name: str
    #: The target's folder (``OUT/<target>``): artifact, manifest.json, golden/.
    directory: Path
    #: The main artifact file.
    artifact: Path
    runtime: str
    #: Whether the artifact ran in its runtime here; when not, the figures below are None.
    executed: bool
    size_bytes: int | None
    accuracy: float | None
    simulation_accuracy: float | None
    #: The artifact against the torch simulation of the quantized model (max error in output steps, ``max_lsb_error``),
    #: for the output farthest from it.
    vs_simulation: Comparison | None
    #: The artifact against the float model (SQNR, top-1 agreement), for the first (primary) output.
    vs_float: Comparison | None
    tolerance_lsb: float
    latency: LatencyFigures | None
    notes: tuple[str, ...]
    #: Every model output, named by its path in the model's output structure.
    outputs: tuple[OutputResult, ...] = ()
    #: Per-layer parity where the runtime exposes its quantized tensors (None: end to end only):
    #: the worst layer in steps (None also when a tensor is missing or on another grid), and the
    #: first layer that diverges, as one line (None when none does).
    layer_parity_lsb: float | None = None
    first_divergence: str | None = None


@dataclass(frozen=True)
class GateVerdict:
    """The recipe's gates and the parity checks over every target."""

    passed: bool
    failures: tuple[str, ...]
    checks: tuple[GateCheck, ...]


@dataclass(frozen=True)
class BuildReport:
    """What ``qconvert.build`` made: per-target artifacts and figures, gate verdicts, paths.

    A failed gate shows in ``gates`` (and ``passed``); ``build`` raises ``GateFailedError``
    only when called with ``raise_on_gate_failure=True``.
    """

    out: Path
    report_json: Path
    float_accuracy: float | None
    calibration_samples: int | None
    eval_samples: int
    targets: Mapping[str, TargetReport]
    gates: GateVerdict
    #: Layers ``auto_fallback`` kept at higher precision (empty without it).
    fallback_layers: tuple[str, ...] = ()
    #: What they were kept at ("float" or "int16"), and the recipe written with them spelled out.
    fallback_keep: str | None = None
    fallback_recipe: Path | None = None
    #: What the user should know that did not stop the build (a target_gates entry for a target not built).
    warnings: tuple[str, ...] = ()
    _record: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def passed(self) -> bool:
        return self.gates.passed

    def summary(self) -> str:
        """The per-target table the CLI prints."""
        from qconvert.verify.precision import precision_lines
        from qconvert.verify.report import summary_table

        precision = precision_lines(dict(self._record))  # --compare-precision: the widths side by side
        return summary_table(dict(self._record)) + ("\n\n" + "\n".join(precision).rstrip() if precision else "")

    @classmethod
    def from_record(cls, out: Path, record: Mapping[str, Any]) -> BuildReport:
        """Read the report record (as written to ``report.json``) into typed fields."""
        targets = {name: _target(out, name, t) for name, t in record["targets"].items()}
        gates = record["gates"]
        fallback = record.get("fallback") or {}
        return cls(
            out=out,
            report_json=out / "report.json",
            float_accuracy=record["float"]["accuracy"],
            calibration_samples=record["calibration"]["samples"],
            eval_samples=record["eval"]["samples"],
            targets=targets,
            gates=GateVerdict(bool(gates["passed"]), tuple(gates["failures"]), tuple(GateCheck(**c) for c in gates["checks"])),
            fallback_layers=tuple(fallback.get("layers") or ()),
            fallback_keep=fallback.get("keep"),
            fallback_recipe=out / fallback["recipe_file"] if fallback.get("recipe_file") else None,
            warnings=tuple(record.get("warnings") or ()),
            _record=record,
        )


def _target(out: Path, name: str, t: Mapping[str, Any]) -> TargetReport:
    lat = t.get("latency")
    latency = None
    if lat:
        by = sorted(lat["by_batch"].items(), key=lambda kv: int(kv[0]))
        latency = LatencyFigures(lat["runtime"], tuple(int(b) for b, _ in by), tuple(v["int8_ms"] for _, v in by),
                                 tuple(v["float_ms"] for _, v in by))
    return TargetReport(
        name=name,
        directory=out / name,
        artifact=out / t["artifact"],
        runtime=str(t["runtime"]),
        executed=bool(t["executed"]),
        size_bytes=t.get("size_bytes"),
        accuracy=t.get("accuracy"),
        simulation_accuracy=t.get("simulation_accuracy"),
        vs_simulation=_comparison(t.get("vs_simulation")),
        vs_float=_comparison(t.get("vs_float")),
        tolerance_lsb=float(t["tolerance_lsb"]),
        latency=latency,
        notes=tuple(t.get("notes") or ()),
        outputs=tuple(OutputResult(o["name"], o["output_scale"], o["parity_step"], _comparison(o["vs_simulation"]),  # type: ignore[arg-type]
                                   _comparison(o["vs_float"])) for o in t.get("outputs") or ()),  # type: ignore[arg-type]
        layer_parity_lsb=(t.get("layer_parity") or {}).get("max_lsb_error"),
        first_divergence=((t.get("layer_parity") or {}).get("first_divergence") or {}).get("text"),
    )


@dataclass(frozen=True)
class Calibration:
    """Statistics collected by ``qconvert.calibrate``; ``out`` holds them for ``build(stats=...)``."""

    out: Path | None
    tensors: int
    samples: int
