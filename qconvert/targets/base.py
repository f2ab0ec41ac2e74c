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
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

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

__all__ = ["API_VERSION", "Artifact", "ArtifactDetails", "Availability", "CheckContext", "DeviceFigures", "ExtraChecks", "ExtraResults",
           "Latency", "NoOptions", "Target", "TargetOptions"]


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


class ArtifactDetails(BaseModel):
    """What a plugin's ``emit`` records about its artifact for its own ``run``, ``latency`` and intermediates,
    kept in manifest.json as ``artifact.details`` (where ``qconvert verify`` reads it back on a board).

    Each plugin subclasses it with typed fields (and ``extra="forbid"``) and names the subclass as its
    ``Target.Details``; the manifest reader validates the stored details with that class. The base keeps
    unknown fields, so a manifest can be read without the plugin (then its details are this base).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    @classmethod
    def of(cls, artifact: Artifact) -> Self:
        """``artifact.details`` as this model (validated from the generic base where a reader did not know the plugin)."""
        d = artifact.details
        return d if isinstance(d, cls) else cls.model_validate(d.model_dump())


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
    #: The plugin's own typed record of the artifact (its ``Target.Details``), stored in the manifest.
    details: ArtifactDetails = field(default_factory=ArtifactDetails)
    runs_in: str = ""
    #: Parity tolerance of this artifact in output steps, where it differs from the target's
    #: ``parity_tolerance_lsb`` (one target, several kernels: x86 vs qnnpack, static vs dynamic).
    tolerance_lsb: float | None = None

    @property
    def path(self) -> Path:
        return self.directory / self.main_file



#: The plugin API this qconvert implements. A plugin declares the version it was written against
#: (``Target.api_version``); the registry refuses another one at load, naming the plugin, rather than
#: letting it fail inside a build. Raised when a method's contract below changes incompatibly.
API_VERSION = 1

OptionsT = TypeVar("OptionsT", bound=TargetOptions)


class Target(ABC, Generic[OptionsT]):
    """The hooks of one target; subclass it as ``class MyTarget(Target[MyOptions])`` in a plugin.

    Register the class under the ``qconvert.targets`` entry point with ``name`` as the entry-point
    name. At load the registry checks that the entry-point name equals ``name``, that ``Options``
    refuses unknown keys (a ``TargetOptions`` subclass), that ``api_version`` equals
    ``API_VERSION``, and that no other distribution registers the same name.

    What the core guarantees to every hook: ``options`` is the target's own ``Options`` model,
    validated from the recipe's ``targets.<name>`` section (never a dict or the base class); hooks
    are called in one process, one target at a time (with ``--jobs`` above 1 each target's emit, run, latency and
    extra checks run in a worker process of their own, forked after calibration, torch on one intra-op thread there);
    ``available()`` was true before any hook that needs the runtime (``emit``, ``run``, ``latency``, ``extra_checks``).
    What every hook must not do: print (return notes instead), exit, change process-wide state
    (torch flags, seeds, the working directory) without restoring it, or write outside the
    directory it is given.
    """

    #: The entry-point name, used in recipes (``targets.<name>``), reports and OUT/<name>.
    name: ClassVar[str]
    description: ClassVar[str] = ""
    #: The options model (``extra="forbid"``, frozen); ``Target[NoOptions]`` for a target without options.
    Options: type[OptionsT] = NoOptions  # type: ignore[assignment]  # the default of Target[NoOptions]; others set their own
    #: The plugin API version this target was written against; must equal ``API_VERSION``.
    api_version: ClassVar[int]
    #: The model of ``Artifact.details`` this target's ``emit`` writes and its ``run`` reads back from a manifest.
    Details: ClassVar[type[ArtifactDetails]] = ArtifactDetails
    #: Tolerance of artifact vs simulation, in output quantization steps.
    parity_tolerance_lsb: ClassVar[float] = 1.0
    #: About how long this target's emit, verification and latency take next to other targets' (1: the onnx target's);
    #: a build with several worker processes (``--jobs``) starts the slowest first. A hint only: no figure depends on it.
    build_cost: ClassVar[float] = 1.0

    def parse_options(self, raw: dict[str, Any] | None, source: str = "recipe") -> OptionsT:
        """The recipe's ``targets.<name>`` section as ``Options``; a bad key is a ``RecipeError`` naming
        ``source`` and the key path. Not meant to be overridden: the core calls it, not the plugin."""
        try:
            return self.Options.model_validate(raw or {})
        except ValidationError as e:
            err = e.errors()[0]
            path = "".join(f".{p}" for p in err["loc"])  # empty for a rule over several options
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            raise RecipeError(f"{source}: targets.{self.name}{path}: {msg}") from e

    @abstractmethod
    def available(self) -> Availability:
        """Whether the runtime imports and works here.

        Core guarantees: called before any hook that needs the runtime, and by ``qconvert targets``.
        Plugin must: return quickly; when not available, say what is missing and how to install it
        (``Availability.of_modules``).
        Plugin must not: raise (a missing runtime is ``Availability(False, reason)``, not an error).
        """

    def constraints(self, options: OptionsT) -> QuantConstraints:
        """What the runtime can represent: modes, bit widths, granularity, power-of-two scales, dynamic ops.

        Core guarantees: every tensor of the quantized model is checked against it before ``emit``;
        a violation is refused naming the node and the rule, or adapted when the recipe says
        ``on_unsupported: adapt`` (``qconvert.targets.plan`` computes this once per recipe and target).
        Plugin must: return the same constraints for the same options, and declare everything ``emit``
        or the runtime would otherwise refuse or compute differently.
        Plugin must not: read the recipe, the model or the runtime (constraints hold without them).
        The default allows everything the core can quantize.
        """
        return QuantConstraints()

    def placement(self, options: OptionsT) -> Placement:
        """Where the core puts Q/DQ pairs for this target (``qconvert.core.placement``).

        Core guarantees: the quantizer applies it as declared (``optimize_for: accuracy`` narrows it
        with ``Placement.for_accuracy``).
        Plugin must: return the same placement for the same options.
        Plugin must not: depend on the model. The default suits integer CPU runtimes (every fused op's
        inputs and output quantized).
        """
        return DEFAULT_PLACEMENT

    def fast_types(self, options: OptionsT) -> FastTypes | None:
        """The types the device this artifact is for runs fastest, and the default ``optimize_for`` there.

        Core guarantees: with ``optimize_for: speed`` the schemes the recipe leaves unset take these
        types; a scheme the recipe sets is kept and the report says it is not the fast form.
        Plugin must: say why in ``FastTypes.why`` (the kernel behaviour, what was measured).
        None: the target declares none; ``optimize_for: speed`` then changes no scheme.
        """
        return None

    def runtime_version(self) -> str:
        """The runtime and its version as reports and manifests show it (``"onnxruntime 1.20.1"``).

        Core guarantees: called only when ``available()`` is true. Plugin must not: raise.
        """
        return "unknown"

    def warm_up(self) -> Callable[[], object] | None:
        """A first step of this target that mostly waits on other processes, to run while the build captures.

        Core guarantees: called in the build's own process, after ``available()`` and before the model is captured
        (the recipe's options are not known yet); the callable returned runs in a background thread while the
        build captures, calibrates and quantizes, and the build waits for it to end before any hook of a target
        emits, runs or times anything and before it forks workers (which inherit what it left: a cache filled).
        Its error goes to the build's log only (``qconvert.warm_up``).
        Plugin must: import here what the callable needs (the background thread must not import while the
        build's thread does); keep the callable to work that waits on subprocesses or files (the build's thread
        holds the interpreter otherwise); leave nothing running and no process-wide setting changed; expect the
        hook that needs the result to do the work again if the callable failed. None (the default): nothing.
        """
        return None

    @abstractmethod
    def emit(self, qmodel: QuantizedModel, out_dir: Path, options: OptionsT) -> Artifact:
        """Write the artifact files for ``qmodel`` into ``out_dir``.

        Core guarantees: ``qmodel`` satisfies ``constraints(options)`` and was quantized with this
        target's placement; ``out_dir`` exists and is empty, inside a staged OUT that is removed if
        the build fails, so a failure leaves nothing half-written.
        Plugin must: write only under ``out_dir``; return an ``Artifact`` whose ``main_file`` exists,
        with ``input_names``/``output_names`` in the graph's order; raise ``ConstraintError`` naming the
        node for a graph the runtime cannot express, ``TargetUnavailableError`` when an exporter is missing.
        Plugin must not: modify ``qmodel`` (other targets quantize from the same capture), or run the
        artifact to check it (the core does, through ``run``).
        """

    @abstractmethod
    def run(self, artifact: Artifact, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the artifact in the target's own runtime; one numpy array per output, in graph order.

        Core guarantees: ``inputs`` has one float array per name in ``artifact.input_names``, at any
        batch size the model accepts; ``artifact`` may come from its manifest.json on another machine
        (``qconvert verify`` on a board: ``qconvert.verify.manifest.read_artifact``, ``details`` validated as ``Details``).
        Plugin must: execute the files ``emit`` wrote, in the runtime ``runtime_version`` names (or
        ``artifact.runs_in``), deterministically.
        Plugin must not: import torch, directly or through the names of ``qconvert.targets`` that need it
        (``QuantizedModel``, the graph helpers): a board has only numpy and the runtime; nor fall back
        silently to another runtime or to the simulation.
        """

    def run_with_intermediates(self, artifact: Artifact, inputs: dict[str, np.ndarray]) -> Intermediates | None:
        """Run the artifact and also return its quantized activations, keyed by simulation node.

        Core guarantees: called after ``run`` was verified, on the evaluation data, for the layer-by-layer parity.
        Plugin must: run as ``run`` does (same kernels, same graph optimizations); return what
        ``qconvert.targets.intermediates`` describes. Plugin must not: import torch.
        None (the default) means this runtime exposes none, and parity is then checked end to end only.
        """
        return None

    def latency(self, qmodel: QuantizedModel, artifact: Artifact, options: OptionsT,
                batch_sizes: tuple[int, ...]) -> Latency | None:
        """Milliseconds per batch of the artifact and of the float model, in the same runtime.

        Core guarantees: called after ``run`` was verified, and only when the build asks for latency.
        Plugin must: time both with ``qconvert.verify.timing.interleaved_ms`` (the two run in turn and
        the figure kept is the 10th percentile of all timed calls, not the median: runs slowed by
        someone else's load sit above it), at each of ``batch_sizes``.
        Plugin must not: time anything but the runtime call (no conversion, no data copies).
        None (the default): not measured.
        """
        return None

    def extra_checks(self, qmodel: QuantizedModel, artifact: Artifact, options: OptionsT,
                     ctx: CheckContext) -> ExtraChecks | None:
        """Checks beyond running the artifact, after ``run`` was verified (default: none).

        Core guarantees: ``ctx`` holds the float model, the statistics, the evaluation data, the
        float references and ``requantize`` (a variant from the same statistics, no data pass).
        Plugin must: write any files into ``artifact.directory``; return notes and results rather than print.
        For a device that cannot run here (TIDL), this is where a target predicts it, e.g. with an
        integer simulation on the evaluation data (``ExtraChecks.device``).
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
