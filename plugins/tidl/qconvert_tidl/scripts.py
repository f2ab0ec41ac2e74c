"""Compile scripts, one per open-source runtime, for a machine with TI's edgeai-tidl-tools.

They follow TI's examples (edgeai-tidl-tools ``examples/osrt_python/ort/onnxrt_ep.py``,
``tfl/tflrt_delegate.py``, ``tvm_dlr/tvm_compilation_onnx_example.py``): the
compilation provider / import delegate / ``TIDLCompiler`` with the options of the
matching JSON file, an artifacts folder that exists and is empty, and the
calibration frames run through the model once. Nothing here runs on this machine:
TIDL's tools are not installable from a package index.
"""

from __future__ import annotations

__all__ = ["SCRIPTS"]

_PROLOGUE = '''#!/usr/bin/env python3
"""{doc}

Written by qconvert. Needs TI's edgeai-tidl-tools (x86 PC): export SOC and TIDL_TOOLS_PATH
(and LD_LIBRARY_PATH) as its setup describes, then run:  python3 {script}
"""
import json
import os
import shutil
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def load_options(name):
    """The JSON options, with ${{TIDL_TOOLS_PATH}} expanded and an empty artifacts folder."""
    options = json.loads((HERE / name).read_text())
    options = {{k: os.path.expandvars(v) if isinstance(v, str) else v for k, v in options.items()}}
    artifacts = HERE / options["artifacts_folder"]
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True)  # TIDL wants it to exist and be empty
    options["artifacts_folder"] = str(artifacts)
    return options


frames = np.load(HERE / "calib_frames.npy")
'''

_ONNXRT = _PROLOGUE.format(doc="Compile model_clip_b1.onnx with ONNX Runtime's TIDLCompilationProvider.", script="compile_onnxrt.py") + '''
import onnxruntime as rt

options = load_options("compile_options_onnxrt.json")
so = rt.SessionOptions()
sess = rt.InferenceSession(str(HERE / "model_clip_b1.onnx"), providers=["TIDLCompilationProvider", "CPUExecutionProvider"],
                           provider_options=[options, {}], sess_options=so)
name = sess.get_inputs()[0].name
for i in range(len(frames)):
    sess.run(None, {name: frames[i : i + 1]})
print("TIDL artifacts in", options["artifacts_folder"], "- run them with providers=['TIDLExecutionProvider', 'CPUExecutionProvider']")
'''

_TFLITERT = _PROLOGUE.format(doc="Compile model_clip.tflite with the TIDL TFLite import delegate.", script="compile_tflitert.py") + '''
import tflite_runtime.interpreter as tflite

options = load_options("compile_options_tflitert.json")
delegate = tflite.load_delegate(os.path.join(options["tidl_tools_path"], "tidl_model_import_tflite.so"), options)
interpreter = tflite.Interpreter(model_path=str(HERE / "model_clip.tflite"), experimental_delegates=[delegate])
interpreter.allocate_tensors()
index = interpreter.get_input_details()[0]["index"]
for i in range(len(frames)):
    interpreter.set_tensor(index, frames[i : i + 1])
    interpreter.invoke()
print("TIDL artifacts in", options["artifacts_folder"], "- run them with the delegate libtidl_tfl_delegate.so")
'''

_TVMDLR = _PROLOGUE.format(doc="Compile model_clip_b1.onnx with TVM and TIDL into a DLR deployable.",
                           script="compile_tvmdlr.py [--pc]") + '''
import sys

import onnx
from tvm import relay
from tvm.relay.backend.contrib import tidl

kwargs = load_options("compile_options_tvmdlr.json")
platform = kwargs.pop("platform")
artifacts = kwargs["artifacts_folder"]
model = onnx.load(str(HERE / "model_clip_b1.onnx"))
name = model.graph.input[0].name
mod, params = relay.frontend.from_onnx(model, shape={name: (1,) + tuple(frames.shape[1:])})
if "--pc" in sys.argv:
    build_target, cross_cc_args = "llvm", {}
else:
    build_target = "llvm -device=arm_cpu -mtriple=aarch64-linux-gnu"
    cross_cc_args = {"cc": os.path.join(os.environ["ARM64_GCC_PATH"], "bin", "aarch64-none-linux-gnu-gcc")}
# SOC and SDK version first, as in TI's tvm_compilation_onnx_example.py.
compiler = tidl.TIDLCompiler(platform, (7, 0), **kwargs)
mod, status = compiler.enable(mod, params, [{name: frames[i : i + 1]} for i in range(len(frames))])
with tidl.build_config(tidl_compiler=compiler):
    graph, lib, params = relay.build_module.build(mod, target=build_target, params=params)
tidl.remove_tidl_params(params)
lib.export_library(os.path.join(artifacts, "deploy_lib.so"), **cross_cc_args)
Path(artifacts, "deploy_graph.json").write_text(graph)
Path(artifacts, "deploy_params.params").write_bytes(relay.save_param_dict(params))
print("DLR deployable in", artifacts)
'''

#: File name -> script text, written next to the option files.
SCRIPTS: dict[str, str] = {
    "compile_onnxrt.py": _ONNXRT,
    "compile_tflitert.py": _TFLITERT,
    "compile_tvmdlr.py": _TVMDLR,
}
