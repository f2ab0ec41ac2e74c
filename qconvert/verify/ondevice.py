"""``qconvert verify OUT/<target>``: re-check an artifact where it will run, without torch.

Only numpy, the target plugin and its runtime are imported: the artifact runs on the
golden inputs written by the build (or on a user's ``.npz``), and each output is compared
with the expected one in output quantization steps, against the tolerance the manifest
records. A board with onnxruntime and numpy can run this; nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qconvert.errors import BadInputError, DataError, PluginError, TargetUnavailableError
from qconvert.io.files import check_dir, check_file, reading
from qconvert.targets.base import Artifact, Target
from qconvert.targets.registry import TargetRegistry
from qconvert.verify.manifest import Manifest, read_manifest
from qconvert.verify.metrics import AccuracyAccumulator, CompareAccumulator
from qconvert.verify.numbers import cell

__all__ = ["OutputCheck", "Verdict", "verify_artifact"]

_LABELS = ("y", "labels", "label")
_CHUNK = 32
# Without a quantization step (a float output), allow float rounding relative to the output's size.
_FLOAT_RTOL = 1e-5


@dataclass(frozen=True)
class OutputCheck:
    """One output compared with its expected values."""

    name: str
    max_abs_error: float
    step: float | None
    max_lsb_error: float | None
    tolerance_lsb: float
    allowed_abs_error: float
    sqnr_db: float
    top1_agreement: float | None

    @property
    def passed(self) -> bool:
        return self.max_abs_error <= self.allowed_abs_error

    def line(self) -> str:
        if self.step is not None:
            err = f"max error {self.max_lsb_error:.3f} LSB (tolerance {self.tolerance_lsb:g} LSB, step {self.step:.4g})"
        else:
            err = f"max abs error {self.max_abs_error:.3g} (tolerance {self.allowed_abs_error:.3g}, float output)"
        agree = f", top-1 agreement {self.top1_agreement:.4f}" if self.top1_agreement is not None else ""
        return f"output '{self.name}': {err}, SQNR {cell(self.sqnr_db)} dB{agree}"


@dataclass(frozen=True)
class Verdict:
    """Everything ``qconvert verify`` prints, and whether it passed."""

    directory: Path
    target: str
    main_file: str
    size_bytes: int
    built_with: str
    runtime_here: str
    data: str
    samples: int
    outputs: tuple[OutputCheck, ...]
    accuracy: float | None

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def failures(self) -> list[str]:
        return [f"{self.target}: {o.line()}" for o in self.outputs if not o.passed]

    def lines(self) -> list[str]:
        """The one-screen verdict."""
        out = [
            f"qconvert verify {self.directory}: {'PASS' if self.passed else 'FAIL'}",
            f"  target    {self.target}: {self.main_file} ({self.size_bytes / 1024:.1f} KiB)",
            f"  runtime   here {self.runtime_here}; built with {self.built_with}",
            f"  data      {self.data}, {self.samples} samples",
        ]
        out += [f"  {'ok  ' if o.passed else 'FAIL'}      {o.line()}" for o in self.outputs]
        if self.accuracy is not None:
            out.append(f"  accuracy  {self.accuracy:.2f} % on the labels in {self.data}")
        return out


def verify_artifact(directory: Path, registry: TargetRegistry, data: Path | None = None) -> Verdict:
    """Run the artifact in ``directory`` and compare with golden (or ``data``) outputs.

    Raises:
        BadInputError: not an artifact directory, or unusable ``data``.
        TargetUnavailableError: the target's plugin or runtime is missing here.
    """
    manifest = _manifest(directory)
    name = manifest.target
    if name not in registry.names():
        raise TargetUnavailableError(f"{directory}: target '{name}' is not installed here; pip install its plugin (qconvert-{name}) and "
                                     "runtime")
    target = _load(registry, name)
    artifact = manifest.artifact.artifact(directory, target.Details)
    if not artifact.path.is_file():
        raise BadInputError(f"{directory}: the artifact file {artifact.main_file} named in manifest.json is missing")
    inputs, expected, labels, source = _golden(directory, artifact) if data is None else _user_data(data, artifact)
    n = len(next(iter(inputs.values())))
    if n == 0:
        raise DataError(f"{source}: contains no samples")
    try:
        got = _run_in_chunks(target.run, artifact, inputs, n)
    except ImportError as e:
        raise TargetUnavailableError(f"target '{name}' cannot run here: {e.name or e} is not installed (pip install the runtime)") from e
    tol = manifest.tolerance
    steps = tol.output_steps or [tol.output_scale]
    checks = []
    for i, oname in enumerate(artifact.output_names):
        step = steps[i] if i < len(steps) else None
        checks.append(_compare(oname, expected[oname], got[i], step, tol.max_lsb))
    accuracy = None
    if labels is not None:
        acc = AccuracyAccumulator()
        acc.update(got[0], labels)
        accuracy = acc.result()
    return Verdict(directory, name, artifact.main_file, artifact.path.stat().st_size, manifest.runtime,
                   target.runtime_version(), source, n, tuple(checks), accuracy)


def _load(registry: TargetRegistry, name: str) -> Target:
    """The plugin, without ``available()``: that asks whether a target can *build* here (an
    exporter, torch), while a board only needs what ``run`` imports, which it imports lazily."""
    try:
        return registry.get(name)
    except PluginError as e:
        if isinstance(e.__cause__, ImportError):
            raise TargetUnavailableError(f"target plugin '{name}' cannot be loaded here: {e.__cause__}") from e
        raise


def _manifest(directory: Path) -> Manifest:
    fix = "give a target's folder of a build, e.g. OUT/onnx"
    check_dir(directory, "artifact directory", BadInputError, fix)
    if (directory / "manifest.json").exists():
        check_file(directory / "manifest.json", "manifest", BadInputError, fix)
    return read_manifest(directory)


Arrays = dict[str, np.ndarray]


def _golden(directory: Path, artifact: Artifact) -> tuple[Arrays, Arrays, np.ndarray | None, str]:
    g = directory / "golden"
    fix = "the build writes golden/ for runnable artifacts; build again or pass --data"
    check_dir(g, "golden folder", BadInputError, fix)
    files = {f"input_{n}": g / f"input_{n}.npy" for n in artifact.input_names}
    files |= {f"output_{n}": g / f"output_{n}.npy" for n in artifact.output_names}
    arrays: Arrays = {}
    for key, f in files.items():
        check_file(f, "golden file", BadInputError, fix)
        with reading(f, "golden .npy file", BadInputError, fix):
            arrays[key] = np.load(f)
        if arrays[key].ndim == 0 or not np.issubdtype(arrays[key].dtype, np.number):
            raise BadInputError(f"{f}: a golden file holds a batch of numbers, this holds {arrays[key].dtype} of shape "
                                f"{arrays[key].shape}; {fix}")
    inputs = {n: arrays[f"input_{n}"] for n in artifact.input_names}
    outputs = {n: arrays[f"output_{n}"] for n in artifact.output_names}
    return inputs, outputs, None, "golden/"


def _user_data(path: Path, artifact: Artifact) -> tuple[Arrays, Arrays, np.ndarray | None, str]:
    """A .npz with inputs (``input_<name>``, ``<name>``, or ``x`` for one input), expected
    outputs ``output_<name>`` (as ``golden/`` names them) and optional labels ``y``."""
    check_file(path, ".npz data file", DataError, "give a .npz with input_<name> and output_<name> arrays")
    z = None
    with reading(path, ".npz file", DataError, "write it with numpy.savez"):
        z = np.load(path)
        if not hasattr(z, "files"):
            raise DataError(f"{path}: holds a single array, not a .npz archive; save it with numpy.savez")
        with z:
            arrays = {k: z[k] for k in z.files}
    inputs: Arrays = {}
    for n in artifact.input_names:
        key = next((k for k in (f"input_{n}", n) if k in arrays), "x" if len(artifact.input_names) == 1 and "x" in arrays else None)
        if key is None:
            raise DataError(f"{path}: no array for input '{n}' (name it 'input_{n}'{' or x' if len(artifact.input_names) == 1 else ''}); "
                            f"the file has {sorted(arrays)}")
        inputs[n] = np.ascontiguousarray(arrays[key])
    missing = [n for n in artifact.output_names if f"output_{n}" not in arrays]
    if missing:
        raise DataError(f"{path}: no expected output(s) {['output_' + n for n in missing]} to compare with; the file has {sorted(arrays)}")
    outputs = {n: arrays[f"output_{n}"] for n in artifact.output_names}
    labels = next((arrays[k] for k in _LABELS if k in arrays), None)
    sizes = {len(a) for a in [*inputs.values(), *outputs.values()]} | ({len(labels)} if labels is not None else set())
    if len(sizes) != 1:
        raise DataError(f"{path}: arrays have different numbers of samples {sorted(sizes)}")
    return inputs, outputs, labels, str(path)


def _run_in_chunks(run, artifact: Artifact, inputs: Arrays, n: int) -> list[np.ndarray]:
    parts: list[list[np.ndarray]] = []
    for start in range(0, n, _CHUNK):
        parts.append(run(artifact, {k: v[start : start + _CHUNK] for k, v in inputs.items()}))
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


def _compare(name: str, expected: np.ndarray, got: np.ndarray, step: float | None, tolerance_lsb: float) -> OutputCheck:
    if expected.shape != got.shape:
        raise DataError(f"output '{name}': expected shape {expected.shape}, the artifact gave {got.shape}")
    c = CompareAccumulator(lsb=step)
    c.update(expected, got)
    r = c.result()
    allowed = tolerance_lsb * step + 1e-3 * step if step else _FLOAT_RTOL * max(1.0,
                                                                                float(np.max(np.abs(expected))) if expected.size else 1.0)
    top1 = r.top1_agreement if expected.ndim >= 2 else None
    return OutputCheck(name, r.max_abs_error, step, r.max_lsb_error, tolerance_lsb, allowed, r.sqnr_db, top1)
