"""Export the core's Q/DQ graph to ONNX QDQ with torch.onnx (dynamo), batch dynamic."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import onnx
import torch

from qconvert.core.quantize import QuantizedModel
from qconvert.targets.base import Artifact
from qconvert_onnx.options import OnnxOptions

__all__ = ["export_qdq", "weight_dequantize_count", "export_onnx_model"]


def export_onnx_model(qmodel: QuantizedModel) -> onnx.ModelProto:
    """The Q/DQ graph as an in-memory ONNX model with a dynamic batch dimension."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    dynamic = tuple({0: batch} for _ in qmodel.example_inputs)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                qmodel.graph, qmodel.example_inputs, dynamo=True, dynamic_shapes=dynamic,
                input_names=list(qmodel.input_names), output_names=_output_names(qmodel), verbose=False,
            )
    finally:
        quiet.setLevel(level)
    assert program is not None
    return program.model_proto


def _output_names(qmodel: QuantizedModel) -> list[str]:
    n = len(qmodel.output_scales())
    return ["output"] if n == 1 else [f"output_{i}" for i in range(n)]


def weight_dequantize_count(model: onnx.ModelProto) -> int:
    """DequantizeLinear nodes fed by an initializer: the quantized weights and biases."""
    inits = {i.name for i in model.graph.initializer}
    consts = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return sum(1 for n in model.graph.node if n.op_type == "DequantizeLinear" and (n.input[0] in inits or n.input[0] in consts))


def _simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxsim

    before = weight_dequantize_count(model)
    simplified, ok = onnxsim.simplify(model, skip_constant_folding=True, check_n=0)
    after = weight_dequantize_count(simplified)
    if not ok or after != before:
        raise RuntimeError(f"onnxsim changed the quantized weights ({before} weight DequantizeLinear before, {after} after)")
    return simplified


def export_qdq(qmodel: QuantizedModel, out_dir: Path, options: OnnxOptions, target: str) -> Artifact:
    model = export_onnx_model(qmodel)
    if options.simplify:
        model = _simplify(model)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, out_dir / options.file_name)
    return Artifact(
        target=target,
        directory=out_dir,
        main_file=options.file_name,
        input_names=tuple(i.name for i in model.graph.input),
        output_names=tuple(o.name for o in model.graph.output),
        extra={"opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
               "weight_dequantize_nodes": weight_dequantize_count(model)},
    )
