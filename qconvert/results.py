"""Typed results of the Python API, read from the very report a build writes.

``BuildReport`` is built from the same record that becomes ``OUT/report.json``, so its
figures are the file's figures. It holds no torch object: a result can be kept, compared
and printed anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from qconvert.verify.report_schema import Comparison, GateCheckEntry, OutputEntry, Report, TargetEntry

__all__ = ["BuildReport", "Calibration", "GateVerdict", "LatencyFigures", "TargetReport"]


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
    """One target's artifact and how it verified in its runtime (``entry``: the very entry of report.json)."""

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
    #: for the output farthest from it. A figure the data cannot tell (NaN) is None.
    vs_simulation: Comparison | None
    #: The artifact against the float model (SQNR, top-1 agreement), for the first (primary) output.
    vs_float: Comparison | None
    tolerance_lsb: float
    latency: LatencyFigures | None
    notes: tuple[str, ...]
    #: Every model output, named by its path in the model's output structure.
    outputs: tuple[OutputEntry, ...] = ()
    #: Per-layer parity where the runtime exposes its quantized tensors (None: end to end only):
    #: the worst layer in steps (None also when a tensor is missing or on another grid), and the
    #: first layer that diverges, as one line (None when none does).
    layer_parity_lsb: float | None = None
    first_divergence: str | None = None
    #: The target's whole entry in report.json, typed (per-layer SQNR, optimize_for, device prediction, ...).
    entry: TargetEntry | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class GateVerdict:
    """The recipe's gates and the parity checks over every target."""

    passed: bool
    failures: tuple[str, ...]
    checks: tuple[GateCheckEntry, ...]


@dataclass(frozen=True)
class BuildReport:
    """What ``qconvert.build`` made: per-target artifacts and figures, gate verdicts, paths.

    A failed gate shows in ``gates`` (and ``passed``); ``build`` raises ``GateFailedError``
    only when called with ``raise_on_gate_failure=True``. ``report`` is the typed report.json itself.
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
    report: Report | None = field(default=None, repr=False, compare=False)

    @property
    def passed(self) -> bool:
        return self.gates.passed

    def summary(self) -> str:
        """The per-target table the CLI prints."""
        from qconvert.verify.precision import precision_lines
        from qconvert.verify.report import summary_table

        if self.report is None:
            return ""
        precision = precision_lines(self.report.precision)  # --compare-precision: the widths side by side
        return summary_table(self.report) + ("\n\n" + "\n".join(precision).rstrip() if precision else "")

    @classmethod
    def of(cls, out: Path, report: Report) -> BuildReport:
        """The API's view of a build's typed report (the object written as ``out/report.json``)."""
        fb = report.fallback
        return cls(
            out=out,
            report_json=out / "report.json",
            float_accuracy=report.float.accuracy,
            calibration_samples=report.calibration.samples,
            eval_samples=report.eval.samples,
            targets={name: _target(out, name, t) for name, t in report.targets.items()},
            gates=GateVerdict(report.gates.passed, tuple(report.gates.failures), tuple(report.gates.checks)),
            fallback_layers=tuple(fb.layers) if fb is not None else (),
            fallback_keep=fb.keep if fb is not None else None,
            fallback_recipe=out / fb.recipe_file if fb is not None and fb.recipe_file else None,
            warnings=tuple(report.warnings),
            report=report,
        )

    @classmethod
    def read(cls, out: Path) -> BuildReport:
        """A build's ``out/report.json``, read back."""
        return cls.of(out, Report.model_validate_json((out / "report.json").read_bytes()))


def _target(out: Path, name: str, t: TargetEntry) -> TargetReport:
    lat = t.latency
    latency = None
    if lat is not None:
        by = sorted((int(b), v) for b, v in lat.by_batch.items())
        latency = LatencyFigures(lat.runtime, tuple(b for b, _ in by), tuple(v.int8_ms for _, v in by), tuple(v.float_ms for _, v in by))
    lp = t.layer_parity
    return TargetReport(
        name=name,
        directory=out / name,
        artifact=out / t.artifact,
        runtime=t.runtime,
        executed=t.executed,
        size_bytes=t.size_bytes,
        accuracy=t.accuracy,
        simulation_accuracy=t.simulation_accuracy,
        vs_simulation=t.vs_simulation,
        vs_float=t.vs_float,
        tolerance_lsb=t.tolerance_lsb,
        latency=latency,
        notes=tuple(t.notes),
        outputs=tuple(t.outputs or ()),
        layer_parity_lsb=lp.max_lsb_error if lp is not None else None,
        first_divergence=lp.first_divergence.text if lp is not None and lp.first_divergence is not None else None,
        entry=t,
    )


@dataclass(frozen=True)
class Calibration:
    """Statistics collected by ``qconvert.calibrate``; ``out`` holds them for ``build(stats=out)``."""

    out: Path | None
    tensors: int
    samples: int
