"""The conformance kit: one suite every target plugin's tests run, in the spirit of pytest's ``pytester``.

A plugin's tests run it for their target with a three-line file::

    from qconvert.testing.conformance import Conformance

    class TestConformance(Conformance):
        target_name = "onnx"

It checks what the core relies on from every target: options that round-trip and refuse
unknown keys, constraint refusals that name the target, the layer and the rule, tiny
models (a residual conv-bn-relu block, a depthwise convolution, a linear network with two
outputs) emitted and run in the target's runtime within the tolerance pinned here, a
build's manifest complete enough for ``qconvert verify``, and ``qconvert verify`` in a
process where torch cannot be imported.

The tolerances are pinned in ``PINNED``, per target name and with the reason; the kit
never reads them from the plugin under test, so raising a plugin's own tolerance cannot
loosen these tests (and a plugin that declares more than its pinned value fails here).
Where the target's own runtime cannot run here, the kit runs everything up to it and
skips the execution with the reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from pydantic import ValidationError

# The plugin under test is reached through the public plugin API (qconvert.targets) and the public Python API
# (qconvert.build) only, as a third-party plugin is. The other imports do the core's part the way a build does:
# quantize a tiny model for the target (capture, calibrate, the target's plan), find the target in a registry,
# and read back the manifest the build wrote.
import qconvert
from qconvert.core.capture import capture
from qconvert.core.outputs import flatten
from qconvert.core.quantize import calibrate
from qconvert.recipe.load import recipe_from_mapping, recipe_hash
from qconvert.targets import Artifact, ConstraintError, QuantizedModel, Recipe, RecipeError, Target, TargetOptions
from qconvert.targets.plan import plan_for
from qconvert.targets.registry import TargetRegistry
from qconvert.testing.models import TINY_MODELS, TinyModel
from qconvert.verify.manifest import read_artifact, read_manifest

__all__ = ["KIT_RECIPE", "PINNED", "Conformance", "Pinned"]

#: The recipe every kit model is quantized with: the target's own constraints adapt what it cannot run.
KIT_RECIPE: dict[str, Any] = {"calibration": {"num_samples": 64, "batch_size": 32}, "on_unsupported": "adapt"}
CALIB_SAMPLES, EVAL_SAMPLES = 64, 32


@dataclass(frozen=True)
class Pinned:
    """What the kit holds one target to, fixed here rather than read from the plugin."""

    #: Largest artifact-vs-simulation difference allowed, in output quantization steps.
    tolerance_lsb: float
    #: Why this tolerance: what the runtime computes differently from the simulation, and what was measured.
    why: str
    #: A recipe change (merged into ``KIT_RECIPE``) this target cannot represent, and the rule its refusal must state.
    refused: dict[str, Any]
    rule: str
    #: Whether the refusal names a layer (a per-tensor rule), rather than the whole recipe.
    per_layer: bool = True
    #: Why ``qconvert verify`` cannot run without torch for this target (its runtime is torch); "" when it can.
    runtime_is_torch: str = ""
    #: Why the target's own runtime never runs here, whatever is installed; "" when it can.
    never_runs_here: str = ""
    #: Kit models whose parity is known to exceed the pinned tolerance, with the measurement: reported as xfail
    #: while they do, and a failure once they no longer do (so the entry is removed when the cause is fixed).
    known_parity_failures: dict[str, str] = field(default_factory=dict)


PINNED: dict[str, Pinned] = {
    "onnx": Pinned(
        1.0, "onnxruntime's int8 kernels requantize in float and round half to even, as the simulation does; a tie "
        "rounded the other way after float summation in another order is one step (measured 0-1 on digits)",
        {"quantize_only": "activations"}, "activations-only quantization (recipe quantize_only: activations) is not supported",
        per_layer=False),
    "tflite": Pinned(
        2.0, "LiteRT requantizes with a fixed-point multiplier and shift, not in float: a step can flip per layer; "
        "measured 1 on ResNet-18 and 2 on MobileNetV2 (random weights, 224x224)",
        {"weights": {"mode": "asym_s"}}, "weight mode must be one of ['sym'], not 'asym_s'"),
    "tvm": Pinned(
        1.0, "the Relax ONNX frontend computes between QuantizeLinear and DequantizeLinear in float32, as the simulation",
        {"activations": {"bits": 16}}, "activations can have at most 8 bits, not 16"),
    "pytorch": Pinned(
        1.0, "oneDNN/fbgemm int8 kernels (x86, the default backend) requantize in float like the simulation "
        "(qnnpack and dynamic quantization, not run by the kit, round differently)",
        {"activations": {"mode": "sym"}}, "activation mode must be one of ['asym_u'], not 'sym'",
        runtime_is_torch="the pytorch target's runtime is torch itself"),
    "tensorrt": Pinned(
        2.0, "the logits stay float (TensorRT's placement): a one-code flip of an inner int8 tensor, summed in "
        "another order than torch, moves them by more than half a step (measured 1.61 on digits)",
        {"activations": {"mode": "asym_u"}}, "activation mode must be one of ['sym'], not 'asym_u'",
        # A float output more than the tolerance off end to end (the depthwise model: 2.67 steps at 0.07 % of values,
        # one int8 code of the depthwise output rounded the other way, times |w| of the 1x1 conv after it) is judged
        # as its own layer: the simulation's float tail fed the runtime's last quantized tensors, within the tolerance.
        ),
    "tidl": Pinned(
        16.0, "the artifact is the float Clip model, which skips the per-layer rounding of the simulation: measured "
        "4.6 (digits) and 6.4 (mbv2_digits) steps; a wrong range or weight grid shows as tens to hundreds",
        {"activations": {"mode": "asym_u"}}, "activation mode must be one of ['sym'], not 'asym_u'",
        never_runs_here="TIDL's device tools are proprietary: the Clip model runs in onnxruntime, the device is simulated"),
}


@dataclass(frozen=True)
class Emitted:
    """One kit model quantized for the target, emitted, and the data to run it on."""

    model: TinyModel
    qmodel: QuantizedModel
    artifact: Artifact
    inputs: dict[str, np.ndarray]


def _quantized(target: Target, options: TargetOptions, tiny: TinyModel, recipe: Recipe) -> QuantizedModel:
    calib = torch.from_numpy(tiny.data(CALIB_SAMPLES, seed=1))
    cap = capture(tiny.build(), (calib[:2],))
    stats = calibrate(cap, recipe, [(calib[:32],), (calib[32:],)])
    return plan_for(recipe, target, options).quantize(cap, stats)


class _Emits:
    """Each kit model emitted once per target (class scope), on first use."""

    def __init__(self, target: Target, root: Path) -> None:
        self.target, self.root = target, root
        self._done: dict[str, Emitted] = {}

    def get(self, name: str) -> Emitted:
        if name not in self._done:
            tiny = TINY_MODELS[name]
            options = self.target.Options()
            qmodel = _quantized(self.target, options, tiny, recipe_from_mapping(KIT_RECIPE))
            out = self.root / name / "artifact"
            out.mkdir(parents=True)
            artifact = self.target.emit(qmodel, out, options)
            self._done[name] = Emitted(tiny, qmodel, artifact, {qmodel.input_names[0]: tiny.data(EVAL_SAMPLES, seed=2)})
        return self._done[name]


def _verify_without_torch(directory: Path) -> subprocess.CompletedProcess[str]:
    """``qconvert verify`` in a fresh interpreter where importing torch fails, as on a board without it."""
    code = ("import os, sys\n"
            "sys.modules['torch'] = None  # any 'import torch' now raises ImportError\n"
            "from qconvert.cli import main\n"
            "try:\n    main(sys.argv[1:])\n"
            "finally:\n"
            "    loaded = sorted(m for m, v in sys.modules.items() if v is not None and m.split('.')[0] in ('torch', 'torchao'))\n"
            "    if loaded:\n        print('imported', loaded, file=sys.stderr); sys.stderr.flush(); os._exit(99)\n")
    return subprocess.run([sys.executable, "-c", code, "verify", str(directory)], capture_output=True, text=True, timeout=300,
                          check=False)


def _skip_unless_executes(target: Target, artifact: Artifact) -> None:
    if not artifact.runnable:
        pytest.skip(f"{target.name}: the artifact cannot run here: {'; '.join(artifact.notes) or 'no reason given'}")


class Conformance:
    """The kit's tests; subclass it in a plugin's tests and set ``target_name``."""

    target_name: ClassVar[str]

    # -- fixtures -------------------------------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    def pinned(self) -> Pinned:
        if self.target_name not in PINNED:
            pytest.fail(f"no tolerance pinned for target '{self.target_name}': add it to "
                        "qconvert.testing.conformance.PINNED with the reason")
        return PINNED[self.target_name]

    @pytest.fixture(scope="class")
    def target(self) -> Target:
        registry = TargetRegistry()
        if self.target_name not in registry.names():
            pytest.skip(f"target '{self.target_name}' is not installed: pip install -e plugins/{self.target_name}")
        return registry.get(self.target_name)

    @pytest.fixture(scope="class")
    def runnable_target(self, target: Target) -> Target:
        """The target, where its exporter and runtime are installed (else the test is skipped with the install hint)."""
        available = target.available()
        if not available.ok:
            pytest.skip(f"{target.name}: {available.reason}")
        return target

    @pytest.fixture(scope="class")
    def emits(self, runnable_target: Target, tmp_path_factory: pytest.TempPathFactory) -> _Emits:
        return _Emits(runnable_target, tmp_path_factory.mktemp(f"kit-{self.target_name}"))

    @pytest.fixture(scope="class")
    def build_dir(self, runnable_target: Target, tmp_path_factory: pytest.TempPathFactory) -> Path:
        """One real build of the two-output model through the public API; returns OUT/<target>."""
        tiny = TINY_MODELS["linear_two_outputs"]
        registry = TargetRegistry(autoload=False)
        registry.register(runnable_target)
        out = tmp_path_factory.mktemp(f"kit-build-{self.target_name}") / "OUT"
        qconvert.build(tiny.build(), dict(KIT_RECIPE), targets=[self.target_name], out=out,
                       calib_data=tiny.data(CALIB_SAMPLES, seed=1), eval_data=tiny.data(EVAL_SAMPLES, seed=2),
                       latency=False, registry=registry)
        return out / self.target_name

    # -- options --------------------------------------------------------------------------------------------------

    def test_options_round_trip(self, target: Target) -> None:
        """Defaults, dumped to JSON and parsed back as a recipe section would be, give the same options."""
        defaults = target.Options()
        dumped = json.loads(json.dumps(defaults.model_dump(mode="json")))
        assert target.parse_options(dumped) == defaults
        assert target.parse_options(None) == defaults and target.parse_options({}) == defaults
        assert target.Options.model_validate_json(defaults.model_dump_json()) == defaults
        with pytest.raises(ValidationError):
            defaults.__setattr__(next(iter(type(defaults).model_fields), "x"), None)  # frozen

    def test_options_have_descriptions(self, target: Target) -> None:
        """Every option is documented in the recipe's JSON Schema."""
        undocumented = [k for k, f in target.Options.model_fields.items() if not f.description]
        assert not undocumented, f"{target.name}: options without a description: {undocumented}"

    def test_unknown_and_bad_options_are_one_line_recipe_errors(self, target: Target) -> None:
        with pytest.raises(RecipeError) as e:
            target.parse_options({"no_such_option": 1}, "r.yaml")
        assert str(e.value) == f"r.yaml: targets.{target.name}.no_such_option: unknown key"
        for name in target.Options.model_fields:
            with pytest.raises(RecipeError) as e:
                target.parse_options({name: {"not": "a valid value"}}, "r.yaml")
            msg = str(e.value)
            assert msg.startswith(f"r.yaml: targets.{target.name}.{name}") and "\n" not in msg, msg

    # -- constraints ----------------------------------------------------------------------------------------------

    def test_declared_tolerance_is_not_looser_than_pinned(self, target: Target, pinned: Pinned) -> None:
        assert target.parity_tolerance_lsb <= pinned.tolerance_lsb, (
            f"{target.name} declares {target.parity_tolerance_lsb} steps, the kit pins {pinned.tolerance_lsb}: {pinned.why}")

    def test_constraint_refusal_names_target_layer_and_rule(self, target: Target, pinned: Pinned) -> None:
        tiny = TINY_MODELS["conv_bn_relu_residual"]
        recipe = recipe_from_mapping({**KIT_RECIPE, **pinned.refused, "on_unsupported": "error"})
        with pytest.raises(ConstraintError) as e:
            _quantized(target, target.Options(), tiny, recipe)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"target '{target.name}': ") and pinned.rule in msg, msg
        if pinned.per_layer:
            layers = {n for n, _ in tiny.build().named_modules() if n} | {"<input>"}
            assert any(f"layer '{n}'" in msg for n in layers), f"no layer of the model named in: {msg}"
            adapted = _quantized(target, target.Options(), tiny, recipe.model_copy(update={"on_unsupported": "adapt"}))
            assert any(pinned.rule in w and "adapted" in w for w in adapted.warnings), adapted.warnings

    def test_refused_build_writes_nothing(self, target: Target, pinned: Pinned, tmp_path: Path) -> None:
        """Through the public API: the refusal comes before anything is written."""
        tiny = TINY_MODELS["conv_bn_relu_residual"]
        registry = TargetRegistry(autoload=False)
        registry.register(target)
        with pytest.raises(ConstraintError, match=f"target '{target.name}'"):
            qconvert.build(tiny.build(), {**KIT_RECIPE, **pinned.refused, "on_unsupported": "error"}, targets=[target.name],
                           out=tmp_path / "OUT", calib_data=tiny.data(CALIB_SAMPLES, seed=1), latency=False, registry=registry)
        assert list(tmp_path.iterdir()) == []

    # -- emit and run ---------------------------------------------------------------------------------------------

    @pytest.mark.parametrize("model", list(TINY_MODELS))
    def test_emit_writes_the_artifact_into_its_folder_only(self, emits: _Emits, pinned: Pinned, model: str) -> None:
        e = emits.get(model)
        a = e.artifact
        assert a.target == self.target_name and a.path.is_file() and a.path.stat().st_size > 0
        assert a.directory == emits.root / model / "artifact" and sorted(p.name for p in a.directory.parent.iterdir()) == ["artifact"]
        assert a.input_names == e.qmodel.input_names
        assert len(a.output_names) == len(e.qmodel.output_scales()) == (2 if model == "linear_two_outputs" else 1)
        assert a.tolerance_lsb is None or a.tolerance_lsb <= pinned.tolerance_lsb

    @pytest.mark.parametrize("model", list(TINY_MODELS))
    def test_runs_within_pinned_tolerance_of_the_simulation(self, emits: _Emits, pinned: Pinned, model: str) -> None:
        e = emits.get(model)
        _skip_unless_executes(emits.target, e.artifact)
        outs = emits.target.run(e.artifact, e.inputs)
        with torch.no_grad():
            sims = [t.numpy() for t in flatten(e.qmodel.graph(*(torch.from_numpy(x) for x in e.inputs.values())))]
        assert len(outs) == len(sims)
        too_far = []
        for name, out, sim, step in zip(e.artifact.output_names, outs, sims, e.qmodel.parity_steps()):
            assert out.shape == sim.shape, name
            assert step is not None and step > 0, f"{name}: no quantization step to measure parity in"
            assert np.abs(sim).max() > 2 * step, f"{name}: the simulation is all but zero; the check would prove nothing"
            worst = float(np.abs(out.astype(np.float64) - sim).max() / step)
            if worst > pinned.tolerance_lsb + 1e-4:
                too_far.append(f"{name}: {worst:.3f} steps > {pinned.tolerance_lsb} ({pinned.why})")
        if too_far:  # a float output (TensorRT's logits) is judged as its own layer, fed the runtime's last tensors
            too_far = _float_outputs_within_as_a_layer(emits.target, e.artifact, e.qmodel, e.inputs, pinned, too_far)
        known = pinned.known_parity_failures.get(model)
        if known is not None:
            assert too_far, f"{model} now runs within {pinned.tolerance_lsb} steps: remove it from known_parity_failures"
            pytest.xfail(f"known: {known}")
        assert not too_far, "; ".join(too_far)

    def test_runs_in_its_own_runtime(self, emits: _Emits, pinned: Pinned) -> None:
        """Where the artifact ran only in a stand-in (TensorRT's ONNX in onnxruntime, TIDL's Clip model), say so."""
        if pinned.never_runs_here:
            pytest.skip(pinned.never_runs_here)
        a = emits.get("conv_bn_relu_residual").artifact
        if a.runs_in:
            pytest.skip(f"{self.target_name}: ran in {a.runs_in} here: {'; '.join(a.notes)}")
        _skip_unless_executes(emits.target, a)

    # -- a build: manifest and verify -----------------------------------------------------------------------------

    def test_manifest_is_complete(self, build_dir: Path, runnable_target: Target, pinned: Pinned) -> None:
        """manifest.json reads as the typed ``Manifest`` (every field present, nothing unknown), and what it says
        agrees with the files and with what was built: what ``qconvert verify`` and a reader of the folder rely on."""
        m = read_manifest(build_dir)
        assert m.target == self.target_name and m.runtime
        assert runnable_target.parse_options(m.target_options) == runnable_target.Options()
        assert recipe_hash(Recipe.model_validate(m.recipe)) == m.recipe_hash
        artifact = m.artifact.artifact(build_dir, runnable_target.Details)
        assert artifact.path.is_file() and artifact.target == self.target_name
        assert len(m.model_outputs) == len(artifact.output_names) == 2, (m.model_outputs, artifact.output_names)
        assert 0 < m.tolerance.max_lsb <= pinned.tolerance_lsb
        assert len(m.tolerance.output_steps) == 2 and all(s is not None and s > 0 for s in m.tolerance.output_steps)
        assert len([q for q in m.quantization if q.role == "weight"]) == 3, "one weight entry per linear layer"
        if artifact.runnable:
            for name in artifact.input_names:
                assert (build_dir / "golden" / f"input_{name}.npy").is_file()
            for name in artifact.output_names:
                assert (build_dir / "golden" / f"output_{name}.npy").is_file()
            worst = m.parity.vs_simulation.max_lsb_error if m.parity.vs_simulation is not None else None
            assert worst is not None and worst <= pinned.tolerance_lsb + 1e-4, worst

    def test_verify_without_torch(self, build_dir: Path, runnable_target: Target, pinned: Pinned, tmp_path: Path) -> None:
        """``qconvert verify`` passes the build's folder without torch, and fails it once a golden output moves."""
        if pinned.runtime_is_torch:
            pytest.skip(pinned.runtime_is_torch)
        if not read_artifact(build_dir, runnable_target.Details).runnable:
            pytest.skip(f"{self.target_name}: the artifact cannot run here, so the build wrote no golden files")
        ok = _verify_without_torch(build_dir)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert ok.stdout.splitlines()[0].endswith(": PASS")
        moved = tmp_path / self.target_name
        shutil.copytree(build_dir, moved)
        golden = moved / "golden" / f"output_{read_artifact(moved, runnable_target.Details).output_names[1]}.npy"
        step = read_manifest(moved).tolerance.output_steps[1]
        assert step is not None
        np.save(golden, np.load(golden) + np.float32(3 * pinned.tolerance_lsb * step))
        bad = _verify_without_torch(moved)
        assert bad.returncode == 3, bad.stdout + bad.stderr
        assert bad.stdout.splitlines()[0].endswith(": FAIL")


def _float_outputs_within_as_a_layer(target: Target, artifact: Artifact, qmodel: QuantizedModel, inputs: dict[str, np.ndarray],
                                     pinned: Pinned, too_far: list[str]) -> list[str]:
    """``too_far`` less the float outputs whose own layer is within the pinned tolerance (per-layer parity's
    ``output_<i>`` row), where the target exposes its quantized tensors; the rest as they were."""
    from qconvert.io.data import Dataset
    from qconvert.verify.layer_parity import layer_parity

    names = tuple(inputs)
    data = Dataset(Path("kit"), dict(inputs), None, None, None, names)
    parity = layer_parity(target, artifact, qmodel, data, pinned.tolerance_lsb, batch_size=len(next(iter(inputs.values()))))
    if parity is None:
        return too_far
    ok = {r.tensor for r in parity.layers if r.node.startswith("output_") and r.status == "ok"}
    float_ok = {name for name, scale in zip(artifact.output_names, qmodel.output_scales()) if scale is None and name in ok}
    return [t for t in too_far if t.split(":", 1)[0] not in float_ok]
