"""The ``tvm`` artifact: qconvert_onnx's QDQ export, compiled by TVM, with what loading it needs.

OUT/tvm/ holds the compiled library (or, for a board without a toolchain here,
its objects and the Relax module), the ONNX model it was compiled from, and in
the manifest the TVM version, the exact target and the entry function.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import onnx
from qconvert_onnx.export import export_onnx_model, narrow_ranges

from qconvert.targets import Artifact, QuantizedModel
from qconvert_tvm.compile import compile_onnx
from qconvert_tvm.details import TvmDetails
from qconvert_tvm.options import TvmOptions
from qconvert_tvm.target_spec import parse_target

__all__ = ["ONNX_FILE", "export_tvm"]

ONNX_FILE = "model.onnx"


def export_tvm(qmodel: QuantizedModel, out_dir: Path, options: TvmOptions, target: str) -> Artifact:
    model = export_onnx_model(qmodel)
    # Sub-8-bit activations (7-bit reduce_range, 4-bit): QuantizeLinear saturates to the storage type, so
    # the onnx target's integer Clip bounds each one to its own range, here as there.
    clips = narrow_ranges(model, qmodel)
    spec = parse_target(options.target)
    built = compile_onnx(model, spec, out_dir, options.file_name, options.cross_compiler)
    onnx.save(built.model, out_dir / ONNX_FILE)  # what the library was compiled from (a static-batch copy where TVM needed one)
    return Artifact(
        target=target,
        directory=out_dir,
        main_file=built.main_file,
        input_names=tuple(i.name for i in model.graph.input),
        output_names=tuple(o.name for o in model.graph.output),
        runnable=built.runnable,
        notes=built.notes,
        details=TvmDetails(
            tvm_version=version("apache-tvm"),
            target=options.target,
            tvm_target=built.target_json,
            arch=spec.arch,
            files=[*built.files, ONNX_FILE],
            # How a board loads it: tvm.runtime.load_module(file) -> relax.VirtualMachine(mod, tvm.cpu())["main"](*inputs)
            entry="main",
            compiled_from=ONNX_FILE,
            narrow_range_clips=clips,
            static_batch=built.static_batch,
        ),
    )
