"""Write the Clip model as ONNX (torch.onnx, dynamo) and as float TFLite (litert-torch).

In the ONNX file every Clip's output is renamed to the quantized tensor's key
(the name in stats files and reports), so TIDL's name lists
(``advanced_options:output_feature_16bit_names_list``, ``deny_list:layer_name``)
can refer to layers by names a user can find in the report.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch.fx import GraphModule

from qconvert_tidl.clipmodel import ClipRange

__all__ = ["clip_names", "export_clip_onnx", "export_clip_tflite"]


def export_clip_onnx(gm: GraphModule, example: tuple[torch.Tensor, ...], input_names: tuple[str, ...],
                     ranges: list[ClipRange]) -> onnx.ModelProto:
    """The Clip model as ONNX with a dynamic batch, Clip outputs named after their tensors."""
    from qconvert_onnx.export import dynamo_export

    model = dynamo_export(gm, example, input_names, ["output"])
    _name_clips(model, ranges)
    onnx.checker.check_model(model, full_check=True)
    return model


def clip_names(model: onnx.ModelProto) -> list[str]:
    """Output names of the Clip nodes, in graph order."""
    return [n.output[0] for n in model.graph.node if n.op_type == "Clip"]


def _clip_bounds(model: onnx.ModelProto, node: onnx.NodeProto) -> tuple[float, float]:
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    lo, hi = (float(consts[name]) if name in consts else float("nan") for name in node.input[1:3])
    return lo, hi


def _name_clips(model: onnx.ModelProto, ranges: list[ClipRange]) -> None:
    """Rename Clip outputs to tensor keys when the Clips match the ranges one to one.

    The exporter keeps graph order and fuses a ReLU into the Clip that follows it;
    if the Clips do not match the simulation's grids exactly, names stay as exported.
    """
    clips = [n for n in model.graph.node if n.op_type == "Clip"]
    if len(clips) != len(ranges):
        return
    for node, rng in zip(clips, ranges):
        lo, hi = _clip_bounds(model, node)
        if not (np.isclose(lo, rng.lo, rtol=0, atol=0) and np.isclose(hi, rng.hi, rtol=0, atol=0)):
            return
    graph_outputs = {o.name for o in model.graph.output}
    taken = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
    for node, rng in zip(clips, ranges):
        old = node.output[0]
        new = f"{rng.tensor}_clip" if rng.tensor in taken or not rng.tensor else rng.tensor
        if old in graph_outputs or new in taken:
            continue
        _rename(model, old, new)
        taken.add(new)


def _rename(model: onnx.ModelProto, old: str, new: str) -> None:
    for n in model.graph.node:
        n.output[:] = [new if o == old else o for o in n.output]
        n.input[:] = [new if i == old else i for i in n.input]
    for vi in model.graph.value_info:
        if vi.name == old:
            vi.name = new


def export_clip_tflite(gm: GraphModule, example: tuple[torch.Tensor, ...], path: Path) -> None:
    """The Clip model as float TFLite with litert-torch, at the example's batch size (TFLite is static)."""
    import litert_torch

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        edge = litert_torch.convert(gm.eval(), example)
        edge.export(str(path))
