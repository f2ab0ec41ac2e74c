"""Configs for recipe variants: per-channel depthwise, a 16-bit layer, 16-bit tensors, preprocessing, bad bits.

Model: conv-bn-relu -> depthwise conv-bn-relu -> conv (logits map), 3x8x8 input, built in code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from qconvert_tidl import TidlTarget
from qconvert_tidl.options import TidlOptions
from tidl_docs import LEGACY_KEYS, OSRT_OPTIONS, parse_import_config
from torch import nn

from qconvert.core.capture import capture
from qconvert.core.quantize import calibrate, quantize
from qconvert.errors import ConstraintError
from qconvert.recipe.model import LayerOverride, Preprocess, QScheme, Recipe

NET = nn.Sequential(
    nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
    nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU(),
    nn.Conv2d(8, 4, 1),
).eval()


def _emit(tmp_path: Path, recipe: Recipe, options: TidlOptions, x: torch.Tensor | None = None) -> Path:
    torch.manual_seed(0)
    x = torch.rand(32, 3, 8, 8) if x is None else x
    cap = capture(NET, (x[:2],))
    target = TidlTarget()
    qm = quantize(cap, recipe, calibrate(cap, recipe, [(x,)]), target.constraints(options), "tidl",
                  calibration_batches=lambda: [(x[i:i + 8],) for i in range(0, len(x), 8)])
    target.emit(qm, tmp_path, options)
    return tmp_path


def _normalized(pixels: np.ndarray, pp: Preprocess) -> torch.Tensor:
    """What qconvert's image loader makes of 0-255 pixels (NCHW, channels already in model order)."""
    shape = (1, -1, 1, 1)
    mean, std = np.asarray(pp.mean, np.float32).reshape(shape), np.asarray(pp.std, np.float32).reshape(shape)
    x = (pixels.astype(np.float32) * pp.scale - mean) / std
    return torch.from_numpy(x.astype(np.float32))


def _recipe(**update: object) -> Recipe:
    base = Recipe(weights=QScheme(granularity="per_channel", power_of_two=True), activations=QScheme(mode="sym", power_of_two=True),
                  on_unsupported="adapt")
    return base.model_copy(update=update)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Per-channel depthwise weights, and the depthwise layer at 16 bits: conv "3" and its fused ReLU "5"."""
    wide_w = LayerOverride(match="3", weights=QScheme(bits=16, granularity="per_channel", power_of_two=True))
    wide_a = LayerOverride(match="5", activations=QScheme(bits=16, mode="sym", power_of_two=True))
    return _emit(tmp_path_factory.mktemp("mixed"), _recipe(overrides=(wide_w, wide_a)),
                 TidlOptions(per_channel_depthwise=True, tflite=False))


def test_per_channel_depthwise_sets_flag_8_and_the_user_flag_level(mixed: Path) -> None:
    cfg = parse_import_config((mixed / "tidl_import_config.txt").read_text())
    assert cfg["calibrationOption"] == str(64 | 8)
    opts = json.loads((mixed / "compile_options_onnxrt.json").read_text())
    assert set(opts) <= OSRT_OPTIONS
    assert opts["accuracy_level"] == 9 and opts["advanced_options:channel_wise_quantization"] == 1
    assert opts["advanced_options:activation_clipping"] == 0 and opts["advanced_options:bias_calibration"] == 0
    assert not (mixed / "compile_options_tflitert.json").exists()  # no TFLite model asked for


def test_sixteen_bit_layer_goes_into_both_name_lists_with_its_onnx_name(mixed: Path) -> None:
    opts = json.loads((mixed / "compile_options_onnxrt.json").read_text())
    features = opts["advanced_options:output_feature_16bit_names_list"].split(", ")
    params = opts["advanced_options:params_16bit_names_list"].split(", ")
    names = {n.output[0] for n in onnx.load(mixed / "model_clip.onnx").graph.node if n.op_type == "Clip"}
    assert features == params and set(features) <= names
    ranges = {r["onnx_name"]: r for r in json.loads((mixed / "clip_ranges.json").read_text())}
    assert ranges[features[0]]["bits"] == 16
    cfg = parse_import_config((mixed / "tidl_import_config.txt").read_text())
    assert set(cfg) <= LEGACY_KEYS and cfg["outputFeature16bitNamesList"] == features[0]
    assert opts["tensor_bits"] == 8


def test_sixteen_bit_tensors_and_image_normalisation(tmp_path: Path) -> None:
    pp = Preprocess(size=(8, 8), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), channel_order="bgr")
    pixels = np.random.default_rng(0).integers(0, 256, (20, 3, 8, 8), dtype=np.uint8)
    d = _emit(tmp_path, _recipe(weights=QScheme(bits=16, power_of_two=True), activations=QScheme(bits=16, mode="sym", power_of_two=True),
                                preprocess=pp), TidlOptions(tflite=False), _normalized(pixels, pp))
    cfg = parse_import_config((d / "tidl_import_config.txt").read_text())
    assert cfg["numParamBits"] == cfg["numFeatureBits"] == "16"
    assert json.loads((d / "compile_options_onnxrt.json").read_text())["tensor_bits"] == 16
    # recipe: (p/255 - m)/s  ==  TIDL: (p - inMean) * inScale
    np.testing.assert_allclose([float(v) for v in cfg["inMean"].split()], [123.675, 116.28, 103.53], rtol=1e-6)
    np.testing.assert_allclose([float(v) for v in cfg["inScale"].split()], [1 / (255 * s) for s in pp.std], rtol=1e-6)
    assert cfg["inDataNorm"] == "1" and cfg["inDataFormat"] == "0" and cfg["inElementType"] == "0"
    # the frames are what the config declares: uint8 pixels that TIDL's normalization turns into the model's inputs
    assert cfg["numFrames"] == "20"
    frames = np.fromfile(d / "calib_frames.bin", dtype=np.uint8)
    assert frames.size == 20 * 3 * 8 * 8 and np.array_equal(frames.reshape(pixels.shape), pixels)
    mean = np.asarray([float(v) for v in cfg["inMean"].split()]).reshape(1, 3, 1, 1)
    scale = np.asarray([float(v) for v in cfg["inScale"].split()]).reshape(1, 3, 1, 1)
    np.testing.assert_allclose((frames.reshape(pixels.shape) - mean) * scale, np.load(d / "calib_frames.npy"), atol=1e-5)


def test_float_data_under_a_preprocess_section_is_declared_float_and_unnormalized(tmp_path: Path) -> None:
    """Frames that are not 0-255 pixels cannot be declared uint8 with normalization: float32, inDataNorm 0."""
    pp = Preprocess(size=(8, 8), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    d = _emit(tmp_path, _recipe(preprocess=pp), TidlOptions(tflite=False))
    cfg = parse_import_config((d / "tidl_import_config.txt").read_text())
    assert cfg["inDataNorm"] == "0" and cfg["inElementType"] == "6" and "inMean" not in cfg
    frames = np.fromfile(d / "calib_frames.bin", dtype=np.float32)
    assert np.array_equal(frames, np.load(d / "calib_frames.npy").ravel())
    assert cfg["numFrames"] == "32" and frames.size == 32 * 3 * 8 * 8


def test_frame_count_follows_the_calibration_data_not_the_two_example_inputs(tmp_path: Path) -> None:
    d = _emit(tmp_path, _recipe(), TidlOptions(tflite=False), torch.rand(24, 3, 8, 8))
    cfg = parse_import_config((d / "tidl_import_config.txt").read_text())
    assert cfg["numFrames"] == "24" and np.load(d / "calib_frames.npy").shape == (24, 3, 8, 8)
    assert json.loads((d / "compile_options_onnxrt.json").read_text())["advanced_options:calibration_frames"] == 24


def test_bit_widths_other_than_8_or_16_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConstraintError, match="8- or 16-bit"):
        _emit(tmp_path, _recipe(weights=QScheme(bits=4, power_of_two=True)), TidlOptions(tflite=False))
