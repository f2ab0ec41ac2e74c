"""optimize_for: each target's fast types on schemes the recipe leaves at their defaults, what an
explicit scheme keeps, the accuracy placement, and that the speed defaults keep digits' accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from qconvert.cli import main
from qconvert.core.capture import capture
from qconvert.core.constraints import QuantConstraints
from qconvert.core.placement import DEFAULT_PLACEMENT
from qconvert.core.quantize import calibrate, quantize
from qconvert.recipe.model import QScheme, Recipe
from qconvert.targets.speed import FastTypes, choose
from qconvert.testing import digits_build_args

Q = torch.ops.quantized_decomposed.quantize_per_tensor.default
X86 = FastTypes("x86", "asym_u")
ARM = FastTypes("arm64", "asym_s")
SYM_ONLY = QuantConstraints(activation_modes=frozenset({"sym"}), weight_modes=frozenset({"sym"}))


def test_defaults_take_the_device_fast_types() -> None:
    assert choose(Recipe(), "onnx", X86, QuantConstraints(), DEFAULT_PLACEMENT).recipe.activations.mode == "asym_u"
    arm = choose(Recipe(), "onnx", ARM, QuantConstraints(), DEFAULT_PLACEMENT)
    assert (arm.optimize_for, arm.source, arm.recipe.activations.mode, arm.notes) == ("speed", "target default", "asym_s", ())
    assert arm.recipe.weights == QScheme(mode="sym", granularity="per_channel")


def test_an_explicit_scheme_is_kept_and_the_report_says_it_is_not_the_fast_form() -> None:
    choice = choose(Recipe(activations=QScheme(mode="sym")), "onnx", X86, QuantConstraints(), DEFAULT_PLACEMENT)
    assert choice.recipe.activations.mode == "sym"
    assert len(choice.notes) == 1 and "'sym'" in choice.notes[0] and "'asym_u'" in choice.notes[0]
    # TFLite stores asym_u as int8 on the same grid: asking for it is not a slow choice
    tflite = QuantConstraints(activation_mode_equivalents=(("asym_u", "asym_s"),))
    assert choose(Recipe(activations=QScheme(mode="asym_u")), "tflite", ARM, tflite, DEFAULT_PLACEMENT).notes == ()


def test_unset_schemes_follow_what_the_target_represents_without_refusal() -> None:
    tidl_like = QuantConstraints(activation_modes=frozenset({"sym"}), weight_modes=frozenset({"sym"}), power_of_two="required",
                                 per_channel_depthwise_only=True, max_activation_bits=8)
    for optimize_for in ("speed", "accuracy"):
        r = choose(Recipe(optimize_for=optimize_for), "tidl", None, tidl_like, DEFAULT_PLACEMENT).recipe
        got = (r.activations.mode, r.activations.power_of_two, r.weights.granularity, r.weights.power_of_two)
        assert got == ("sym", True, "per_tensor", True)
        assert r.on_unsupported == "error"  # nothing left to refuse: the defaults were never the recipe's demand


def test_accuracy_prefers_asymmetric_activations_and_keeps_pools_float() -> None:
    choice = choose(Recipe(optimize_for="accuracy"), "tensorrt", FastTypes("gpu", "sym"), SYM_ONLY, DEFAULT_PLACEMENT)
    assert choice.recipe.activations.mode == "sym"  # the most accurate the target can represent
    assert choose(Recipe(optimize_for="accuracy"), "onnx", ARM, QuantConstraints(), DEFAULT_PLACEMENT).recipe.activations.mode == "asym_u"
    per_target = Recipe(optimize_for={"onnx": "accuracy"})
    assert choose(per_target, "onnx", X86, QuantConstraints(), DEFAULT_PLACEMENT).optimize_for == "accuracy"
    assert choose(per_target, "tflite", ARM, QuantConstraints(), DEFAULT_PLACEMENT).optimize_for == "speed"
    assert choose(Recipe(), "tvm", FastTypes("x86", "asym_u", default="accuracy"), QuantConstraints(),
                  DEFAULT_PLACEMENT).optimize_for == "accuracy"


class _SE(nn.Module):
    """conv -> relu -> (x * sigmoid(pool)) -> avgpool -> linear: mul and pool have int8 kernels in onnxruntime."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.gate, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 1), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        y = y * torch.sigmoid(self.gate(nn.functional.adaptive_avg_pool2d(y, 1)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


@pytest.fixture(scope="module")
def se_calibrated() -> tuple:
    """The SE model captured and calibrated once, for the tests below."""
    torch.manual_seed(0)
    x = torch.randn(16, 3, 8, 8)
    cap = capture(_SE().eval(), (x[:2],))
    stats = calibrate(cap, Recipe(), [(x,)])
    return cap, stats


def test_accuracy_placement_quantizes_compute_ops_only(se_calibrated: tuple) -> None:
    cap, stats = se_calibrated
    quantized = {}
    for optimize_for in ("speed", "accuracy"):
        choice = choose(Recipe(optimize_for=optimize_for), "onnx", X86, QuantConstraints(), DEFAULT_PLACEMENT)
        qm = quantize(cap, choice.recipe, stats, QuantConstraints(), "onnx", choice.placement)
        quantized[optimize_for] = {str(n.args[0]) for n in qm.graph.graph.nodes if n.target == Q}
    # speed: the mul and the last pool run in int8 too; accuracy: only what conv/linear read and write
    # (the first pool's output is quantized there as the gate conv's input)
    assert {"mul", "adaptive_avg_pool2d_1"} <= quantized["speed"]
    assert not {"mul", "adaptive_avg_pool2d_1"} & quantized["accuracy"]
    assert {"x", "relu", "adaptive_avg_pool2d", "flatten"} <= quantized["accuracy"]


def test_unknown_target_in_optimize_for_is_one_clear_line(digits: dict[str, Path], tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(digits["recipe"].read_text() + "optimize_for: {onnxx: speed}\n")
    args = digits_build_args({**digits, "recipe": recipe}, tmp_path / "OUT", "onnx")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "optimize_for.onnxx: no such target" in result.output and "did you mean: onnx?" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "OUT").exists()


def test_speed_defaults_keep_digits_accuracy_and_run_every_node_in_int8(onnx_build: Path, digits: dict[str, Path], tmp_path: Path) -> None:
    recipe = tmp_path / "accuracy.yaml"
    recipe.write_text(digits["recipe"].read_text() + "optimize_for: accuracy\n")
    result = CliRunner().invoke(main, digits_build_args({**digits, "recipe": recipe}, tmp_path / "OUT", "onnx"))
    assert result.exit_code == 0, result.output
    speed = json.loads((onnx_build / "report.json").read_text())
    accurate = json.loads((tmp_path / "OUT" / "report.json").read_text())
    s, a = speed["targets"]["onnx"], accurate["targets"]["onnx"]
    assert (s["optimize_for"]["optimize_for"], s["optimize_for"]["source"]) == ("speed", "target default")
    assert (a["optimize_for"]["optimize_for"], a["optimize_for"]["source"]) == ("accuracy", "recipe")
    # onnxruntime ran every compute node of the speed build in int8 (digits has no mul for accuracy to keep float)
    assert s["latency"]["float_nodes"] == 0 and s["latency"]["int8_nodes"] > 0
    assert a["latency"]["int8_nodes"] <= s["latency"]["int8_nodes"]
    assert abs(s["accuracy"] - a["accuracy"]) <= 0.2 and speed["float"]["accuracy"] - s["accuracy"] <= 0.2
    assert "optimized for speed (target default) on x86 CPU (onnxruntime)" in (onnx_build / "report.md").read_text()


@pytest.mark.parametrize("name", ["onnx", "pytorch", "tensorrt", "tflite", "tidl", "tvm"])
def test_every_bundled_target_declares_its_fast_types(name: str) -> None:
    from qconvert.targets.registry import TargetRegistry

    registry = TargetRegistry()
    if name not in registry.names():
        pytest.skip(f"target {name} is not installed")
    target = registry.get(name)
    options = target.parse_options({})
    fast = target.fast_types(options)
    assert fast is not None and fast.why
    assert fast.activation_mode in target.constraints(options).activation_modes
    assert fast.weight_mode in target.constraints(options).weight_modes


def test_onnxruntime_runs_the_mul_in_int8_for_speed_and_in_float_for_accuracy(se_calibrated: tuple, tmp_path: Path) -> None:
    pytest.importorskip("qconvert_onnx")
    from qconvert_onnx import OnnxTarget
    from qconvert_onnx.latency import count_int8_nodes

    cap, stats = se_calibrated
    target = OnnxTarget()
    options = target.parse_options({})
    ops = {}
    for optimize_for in ("speed", "accuracy"):
        choice = choose(Recipe(optimize_for=optimize_for), "onnx", target.fast_types(options), target.constraints(options),
                        target.placement(options))
        qm = quantize(cap, choice.recipe, stats, target.constraints(options), "onnx", choice.placement)
        (tmp_path / optimize_for).mkdir()
        ops[optimize_for] = count_int8_nodes(str(target.emit(qm, tmp_path / optimize_for, options).path))
    assert ops["speed"][1] == 0  # every compute node in int8: QLinearSigmoid, QLinearMul, QLinearGlobalAveragePool
    # accuracy: the sigmoid, the mul and the pool reading the float mul stay float; the two convs, the linear and the
    # pool feeding the gate conv (DQ -> pool -> Q, which onnxruntime fuses) run in int8
    assert ops["accuracy"][2] == ("GlobalAveragePool", "Mul", "Sigmoid") and ops["accuracy"][0] == 4


def test_onnx_x86_without_vnni_gets_7_bit_weights_and_refuses_explicit_8_bit(se_calibrated: tuple, tmp_path: Path) -> None:
    pytest.importorskip("qconvert_onnx")
    import onnx
    from onnx import numpy_helper
    from qconvert_onnx import OnnxTarget

    from qconvert.errors import ConstraintError

    cap, stats = se_calibrated
    target = OnnxTarget()
    options = target.parse_options({"device": "x86_avx2"})
    constraints = target.constraints(options)
    choice = choose(Recipe(), "onnx", target.fast_types(options), constraints, target.placement(options))
    assert choice.recipe.weights.bits == 7 and choice.recipe.activations.mode == "asym_u"
    artifact = target.emit(quantize(cap, choice.recipe, stats, constraints, "onnx", choice.placement), tmp_path, options)
    weights = [numpy_helper.to_array(i) for i in onnx.load(artifact.path).graph.initializer
               if i.data_type == onnx.TensorProto.INT8 and len(i.dims) >= 2]
    assert len(weights) == 3 and all(w.min() >= -64 and w.max() <= 63 for w in weights)
    assert any(w.max() == 63 or w.min() == -64 for w in weights)  # the 7-bit grid is used, not a narrower one
    explicit = Recipe(weights=QScheme(bits=8, mode="sym", granularity="per_channel"))
    with pytest.raises(ConstraintError, match="at most 7 bits"):
        quantize(cap, choose(explicit, "onnx", target.fast_types(options), constraints, target.placement(options)).recipe,
                 stats, constraints, "onnx")


@pytest.mark.parametrize(("text", "message"), [
    ("optimize_for: fast\n", "recipe.yaml:2: optimize_for: 'fast': must be 'speed', 'accuracy', or a mapping of target names to those"),
    ("optimize_for:\n  onnx: quick\n", "recipe.yaml:2: optimize_for: 'onnx: quick': each target takes 'speed' or 'accuracy'"),
])
def test_a_wrong_optimize_for_is_one_clear_message(text: str, message: str, tmp_path: Path) -> None:
    from qconvert.errors import RecipeError
    from qconvert.recipe import load_recipe

    path = tmp_path / "recipe.yaml"
    path.write_text("version: 1\n" + text)
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    assert str(e.value).endswith(message) and "more error" not in str(e.value)


def test_no_latency_skips_the_timing_and_the_report_says_so(digits: dict[str, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(main, [*digits_build_args(digits, tmp_path / "OUT", "onnx"), "--no-latency"])
    assert result.exit_code == 0, result.output
    t = json.loads((tmp_path / "OUT" / "report.json").read_text())["targets"]["onnx"]
    assert t["latency"] is None and t["latency_skipped"] is True
    assert "- latency: not measured (--no-latency)" in (tmp_path / "OUT" / "report.md").read_text()
