"""Write everything of ``OUT/tidl/``: Clip models, calibration frames, configs, scripts.

Files:
  model_clip.onnx           float Clip model, dynamic batch (run here in onnxruntime)
  model_clip_b1.onnx        the same at batch 1 with inferred shapes, for TIDL's tools
  model_clip.tflite         the same as float TFLite (litert-torch), batch 1
  clip_ranges.json          every Clip: tensor, range, scale, bits, signedness
  calib_frames.npy / .bin   calibration inputs for TIDL's import run: .npy the model's float32 NCHW inputs, .bin
                            in the type and normalization the import config declares (frames.py)
  tidl_import_config.txt    legacy import tool config
  compile_options_{onnxrt,tflitert,tvmdlr}.json, compile_{onnxrt,tflitert,tvmdlr}.py
"""

from __future__ import annotations

import copy
import json
from importlib.metadata import version
from pathlib import Path

import onnx
import torch
from torch.fx import GraphModule

from qconvert.targets import Artifact, ConstraintError, OpKind, QuantizedModel, module_of, op_kind
from qconvert_tidl.clipmodel import ClipRange, activation_quantizers, clip_model
from qconvert_tidl.configs import InputSpec, TidlConfig, import_config_text, osrt_options, tvm_options
from qconvert_tidl.constraints import check_bits
from qconvert_tidl.details import TidlDetails
from qconvert_tidl.export import export_clip_onnx, export_clip_tflite
from qconvert_tidl.frames import WrittenFrames, write_frames
from qconvert_tidl.options import TidlOptions
from qconvert_tidl.runtime import tflite_available
from qconvert_tidl.scripts import SCRIPTS

__all__ = ["ONNX_B1_FILE", "ONNX_FILE", "TFLITE_FILE", "emit_tidl"]

ONNX_FILE, ONNX_B1_FILE, TFLITE_FILE = "model_clip.onnx", "model_clip_b1.onnx", "model_clip.tflite"
CALIB_NPY, CALIB_BIN = "calib_frames.npy", "calib_frames.bin"


def emit_tidl(qmodel: QuantizedModel, out_dir: Path, options: TidlOptions, target: str) -> Artifact:
    check_bits(qmodel.recipe)
    gm, ranges = clip_model(qmodel.graph)
    model = export_clip_onnx(gm, qmodel.example_inputs, qmodel.input_names, ranges)
    onnx.save(model, out_dir / ONNX_FILE)
    onnx.save(_batch_one(model), out_dir / ONNX_B1_FILE)
    notes = [("TIDL itself is not run here (proprietary); the Clip model runs in onnxruntime, "
              "the device is predicted by an integer simulation (see checks.device_prediction)")]
    tflite_file = _write_tflite(gm, qmodel, out_dir, options, notes)
    written = write_frames(qmodel, _input_spec(qmodel), out_dir / CALIB_NPY, out_dir / CALIB_BIN)
    notes += written.notes
    names = {rng.tensor: name for rng, name in zip(ranges, _clip_outputs(model, len(ranges)))}
    cfg = _config(qmodel, options, written, names, tflite_file)
    _write_configs(cfg, options, out_dir)
    (out_dir / "clip_ranges.json").write_text(json.dumps([_range_json(r, names) for r in ranges], indent=1) + "\n")
    return Artifact(
        target=target, directory=out_dir, main_file=ONNX_FILE,
        input_names=tuple(i.name for i in model.graph.input), output_names=tuple(o.name for o in model.graph.output),
        notes=tuple(notes), runs_in="onnxruntime (float Clip model; TIDL itself not run, device simulated)",
        details=TidlDetails(clips=len(ranges), tensor_bits=cfg.tensor_bits, calibration_option=cfg.calibration_option, tflite=tflite_file,
                            features_16bit=list(cfg.features_16bit), params_16bit=list(cfg.params_16bit)),
    )


def _write_tflite(gm: GraphModule, qmodel: QuantizedModel, out_dir: Path, options: TidlOptions, notes: list[str]) -> str | None:
    if not options.tflite:
        return None
    if not tflite_available():
        notes.append("TFLite Clip model not written: pip install litert-torch ai-edge-litert")
        return None
    example = tuple(t[:1] for t in qmodel.example_inputs)
    export_clip_tflite(copy.deepcopy(gm), example, out_dir / TFLITE_FILE)
    return TFLITE_FILE


def _batch_one(model: onnx.ModelProto) -> onnx.ModelProto:
    """A static batch-1 copy with inferred shapes: TIDL's import and compile want fixed shapes."""
    fixed = copy.deepcopy(model)
    for value in list(fixed.graph.input) + list(fixed.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 1
    del fixed.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(fixed)


def _clip_outputs(model: onnx.ModelProto, count: int) -> list[str]:
    outs = [n.output[0] for n in model.graph.node if n.op_type == "Clip"]
    return outs if len(outs) == count else [""] * count


def _range_json(r: ClipRange, names: dict[str, str]) -> dict[str, object]:
    return {"tensor": r.tensor, "onnx_name": names.get(r.tensor, ""), "lo": r.lo, "hi": r.hi, "scale": r.scale,
            "bits": r.bits, "unsigned": r.qmin >= 0}


def _input_spec(qmodel: QuantizedModel) -> InputSpec:
    dims = [1, 1, 1] + [int(d) for d in qmodel.example_inputs[0].shape[1:]]
    c, h, w = dims[-3:]
    pp = qmodel.recipe.preprocess
    if pp is None:
        return InputSpec(qmodel.input_names[0], c, h, w)
    # recipe: x = (pixel * scale - mean) / std  ==  TIDL: (pixel - mean / scale) * (scale / std)
    mean = tuple(m / pp.scale for m in pp.mean)
    scale = tuple(pp.scale / s for s in pp.std)
    return InputSpec(qmodel.input_names[0], c, h, w, mean, scale, rgb=pp.channel_order != "bgr")


def _config(qmodel: QuantizedModel, options: TidlOptions, frames: WrittenFrames, names: dict[str, str],
            tflite_file: str | None) -> TidlConfig:
    r = qmodel.recipe
    feature_bits, param_bits = r.activations.bits, r.weights.bits
    features16, params16 = [], []
    for tq in qmodel.decisions.values():
        if tq.scheme.bits < (feature_bits if tq.role == "activation" else param_bits):
            raise ConstraintError(
                f"target 'tidl': layer '{tq.module}' uses {tq.scheme.bits} bits, fewer than the recipe's "
                f"{feature_bits}; TIDL runs a layer at tensor_bits or at 16 bits, never below tensor_bits"
            )
        if tq.role == "activation" and tq.scheme.bits > feature_bits:
            features16.append(_layer_name(names, tq.key, tq.module))
        elif tq.role == "weight" and tq.scheme.bits > param_bits:
            params16.append(_layer_name(names, _layer_output_key(qmodel, tq.module), tq.module))
    return TidlConfig(
        input=frames.spec, param_bits=param_bits, feature_bits=feature_bits,
        per_channel_depthwise=options.per_channel_depthwise, onnx_file=ONNX_B1_FILE, tflite_file=tflite_file,
        calib_file=CALIB_BIN, calib_frames=frames.count, features_16bit=tuple(sorted(set(features16))),
        params_16bit=tuple(sorted(set(params16))), deny_layer_types=options.deny_layer_types,
        deny_layer_types_tflite=options.deny_layer_types_tflite, deny_layer_names=options.deny_layer_names,
    )


def _layer_name(names: dict[str, str], key: str, module: str) -> str:
    name = names.get(key)
    if not name:
        raise ConstraintError(f"target 'tidl': cannot name the ONNX output of layer '{module}' for TIDL's 16-bit list")
    return name


def _layer_output_key(qmodel: QuantizedModel, module: str) -> str:
    """The quantized tensor a weighted layer (conv/linear, + fused activation) writes."""
    quantized = {q.args[0]: q for q, _ in activation_quantizers(qmodel.graph)}
    for n in qmodel.graph.graph.nodes:
        if op_kind(n) == OpKind.WEIGHTED and module_of(n) == module:
            out = n
            users = list(out.users)
            if len(users) == 1 and op_kind(users[0]) == OpKind.FUSED_ACT:
                out = users[0]
            if out in quantized:
                return out.name
    return ""


def _write_configs(cfg: TidlConfig, options: TidlOptions, out_dir: Path) -> None:
    header = f"TIDL import configuration written by qconvert {version('qconvert')} (torch {torch.__version__})."
    (out_dir / "tidl_import_config.txt").write_text(import_config_text(cfg, header))
    files: dict[str, object] = {
        "compile_options_onnxrt.json": osrt_options(cfg, "onnxrt"),
        "compile_options_tvmdlr.json": tvm_options(cfg, options.soc),
    }
    if cfg.tflite_file:
        files["compile_options_tflitert.json"] = osrt_options(cfg, "tflitert")
    for name, opts in files.items():
        (out_dir / name).write_text(json.dumps(opts, indent=1) + "\n")
    for name, text in SCRIPTS.items():
        if name == "compile_tflitert.py" and not cfg.tflite_file:
            continue
        (out_dir / name).write_text(text)
