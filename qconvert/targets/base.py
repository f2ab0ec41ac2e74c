"""The target interface every plugin implements.

A target declares what it can represent (``constraints``), turns the core's
quantized model into runtime files (``emit``), and runs those files in its own
runtime (``run``). ``run`` must not need torch, so ``qconvert verify`` works on
a board that has only the runtime and numpy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from qconvert.core.constraints import QuantConstraints
from qconvert.core.placement import DEFAULT_PLACEMENT, Placement
from qconvert.errors import RecipeError
from qconvert.targets.speed import FastTypes
from qconvert.verify.report_schema import BatchLatency, ExtraResults, LatencyEntry

if TYPE_CHECKING:
    import numpy as np
    import torch

    from qconvert.core.quantize import QuantizedModel
    from qconvert.core.stats import StatsSet
    from qconvert.io.data import Dataset
    from qconvert.recipe.model import Recipe
    from qconvert.targets.intermediates import Intermediates
    from qconvert.verify.references import FloatReferences

__all__ = ["Artifact", "Availability", "CheckContext", "DeviceFigures", "ExtraChecks", "ExtraResults", "Latency", "NoOptions", "Target",
           "TargetOptions"]


class TargetOptions(BaseModel):
    """Base for a target's own options: frozen, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoOptions(TargetOptions):
    """For targets without options."""


@dataclass(frozen=True)
class Availability:
    """Whether a target's runtime works here, and if not, how to get it."""

    ok: bool
    reason: str = ""

    @classmethod
    def of_modules(cls, *modules: str, install: str) -> Availability:
        """Available when every module imports; otherwise the first missing one and ``pip install <install>``."""
        import importlib

        for module in modules:
            try:
                importlib.import_module(module)
            except ImportError as e:
                return cls(False, f"{e.name or module} is not installed: pip install {install}")
        return cls(True)


@dataclass(frozen=True)
class Artifact:
    """What ``emit`` wrote. ``runnable`` is False when the runtime cannot execute it
    here (e.g. a TensorRT engine on a machine without a GPU); ``notes`` say why.
    ``runs_in`` names what executes it here when that is not the target's own
    runtime (TensorRT without a GPU: its ONNX in onnxruntime); reports show it."""

    target: str
    directory: Path
    main_file: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    runnable: bool = True
    notes: tuple[str, ...] = field(default=())
    extra: dict[str, Any] = field(default_factory=dict)
    runs_in: str = ""
    #: Parity tolerance of this artifact in output steps, where it differs from the target's
    #: ``parity_tolerance_lsb`` (one target, several kernels: x86 vs qnnpack, static vs dynamic).
    tolerance_lsb: float | None = None

    @property
    def path(self) -> Path:
        return self.directory / self.main_file



class Target(ABC):
    """Subclass this in a plugin and register it under the ``qconvert.targets`` entry point."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Options: ClassVar[type[TargetOptions]] = NoOptions
    #: Tolerance of artifact vs simulation, in output quantization steps.
    parity_tolerance_lsb: ClassVar[float] = 1.0

    def parse_options(self, raw: dict[str, Any] | None, source: str = "recipe") -> TargetOptions:
        try:
            return self.Options.model_validate(raw or {})
        except ValidationError as e:
            err = e.errors()[0]
            path = "".join(f".{p}" for p in err["loc"])  # empty for a rule over several options
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            raise RecipeError(f"{source}: targets.{self.name}{path}: {msg}") from e

    @abstractmethod
    def available(self) -> Availability:
        """Whether the runtime is importable and usable here; never raises."""

    def constraints(self, options: TargetOptions) -> QuantConstraints:
        return QuantConstraints()

    def placement(self, options: TargetOptions) -> Placement:
        """Where the core puts Q/DQ for this target; the default suits integer CPU runtimes."""
        return DEFAULT_PLACEMENT

    def fast_types(self, options: TargetOptions) -> FastTypes | None:
        """The types the device this artifact is for runs fastest, and the default ``optimize_for`` there.

        None: the target declares none; ``optimize_for: speed`` then changes no scheme.
        """
        return None

    def runtime_version(self) -> str:
        return "unknown"

    @abstractmethod
    def emit(self, qmodel: QuantizedModel, out_dir: Path, options: TargetOptions) -> Artifact:
        """Write the artifact files into ``out_dir`` (which exists and is empty)."""

    @abstractmethod
    def run(self, artifact: Artifact, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the artifact in the target's own runtime; outputs in graph order."""

    def run_with_intermediates(self, artifact: Artifact, inputs: dict[str, np.ndarray]) -> Intermediates | None:
        """Run the artifact and also return its quantized activations, keyed by simulation node.

        Optional: None (the default) means this runtime exposes none, and parity is then
        checked end to end only. The runtime must run as ``run`` does (same kernels,
        same graph optimizations); ``qconvert.targets.intermediates`` says what to return.
        """
        return None

    def latency(self, qmodel: QuantizedModel, artifact: Artifact, options: TargetOptions,
                batch_sizes: tuple[int, ...]) -> Latency | None:
        """Median latency of the artifact and of the float model in the same runtime (default: not measured)."""
        return None

    def extra_checks(self, qmodel: QuantizedModel, artifact: Artifact, options: TargetOptions,
                     ctx: CheckContext) -> ExtraChecks | None:
        """Checks beyond running the artifact, after ``run`` was verified (default: none).

        For a device that cannot run here (TIDL), this is where a target predicts
        it, e.g. with an integer simulation on the evaluation data; files it
        writes go into ``artifact.directory``.
        """
        return None


@dataclass(frozen=True)
class Latency:
    """Artifact vs float model in the same runtime: milliseconds per batch size (``qconvert.verify.timing``).

    ``int8_nodes``/``float_nodes`` count compute nodes that ran in integer or in
    float arithmetic, where the runtime can tell (None where it cannot).
    """

    runtime: str
    batch_sizes: tuple[int, ...]
    int8_ms: tuple[float, ...]
    float_ms: tuple[float, ...]
    int8_nodes: int | None = None
    float_nodes: int | None = None
    float_ops: tuple[str, ...] = ()

    def entry(self) -> LatencyEntry:
        """As report.json's ``latency`` holds it."""
        return LatencyEntry(
            runtime=self.runtime,
            by_batch={str(b): BatchLatency(int8_ms=i, float_ms=f, speedup=f / i if i > 0 else None)
                      for b, i, f in zip(self.batch_sizes, self.int8_ms, self.float_ms)},
            int8_nodes=self.int8_nodes, float_nodes=self.float_nodes, float_ops=list(self.float_ops),
        )


@dataclass(frozen=True)
class CheckContext:
    """What ``Target.extra_checks`` may use besides the quantized model and its artifact.

    ``requantize(recipe, constraints)`` quantizes the same capture from the same
    statistics (no data pass), for variants such as per-layer precision tables.
    """

    model: torch.nn.Module
    stats: StatsSet
    data: Dataset
    requantize: Callable[[Recipe, QuantConstraints], QuantizedModel]
    #: The float model's outputs over ``data`` (computed once per build): use them rather than running ``model`` again.
    references: FloatReferences | None = None


@dataclass(frozen=True)
class DeviceFigures:
    """What the device would score, where it cannot run here (TIDL: the integer device prediction).

    When ``ExtraChecks.device`` is set, the accuracy, SQNR and top-1 gates judge these
    figures instead of the artifact's run here, and the report says so (``label``).
    """

    label: str
    accuracy: float | None
    sqnr_db: float | None
    top1_agreement: float | None


@dataclass(frozen=True)
class ExtraChecks:
    """Result of ``Target.extra_checks``: report notes and the plugin's own typed results (``checks`` in report.json:
    subclass ``ExtraResults`` with the fields)."""

    notes: tuple[str, ...] = ()
    results: ExtraResults | None = None
    device: DeviceFigures | None = None
