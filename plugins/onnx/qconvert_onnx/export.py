"""Export the core's Q/DQ graph to ONNX QDQ with torch.onnx (dynamo), batch dynamic."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from qconvert.targets import Artifact, QuantizedModel
from qconvert_onnx.details import OnnxDetails
from qconvert_onnx.dynamic import replace_dynamic_linears, translation_table
from qconvert_onnx.integer_pad import pad_on_integers
from qconvert_onnx.intermediates import constant_values, map_quantized_tensors
from qconvert_onnx.options import OnnxOptions
from qconvert_onnx.rewrite import keep_float_layers_float, reduce_mean_to_global_pool
from qconvert_onnx.torchlib_registry import shared_registry

__all__ = ["dynamo_export", "export_float_model", "export_onnx_model", "export_qdq", "weight_dequantize_count", "with_wide_qdq_opset"]


def export_onnx_model(qmodel: QuantizedModel) -> onnx.ModelProto:
    """The Q/DQ graph as an in-memory ONNX model with a dynamic batch dimension."""
    return _export(replace_dynamic_linears(qmodel.graph), qmodel)


def export_float_model(qmodel: QuantizedModel) -> onnx.ModelProto:
    """The float graph the quantized one came from (BatchNorm folded by onnxruntime), for latency baselines."""
    return _export(qmodel.captured.graph, qmodel)


def _export(gm: torch.nn.Module, qmodel: QuantizedModel) -> onnx.ModelProto:
    return dynamo_export(gm, qmodel.example_inputs, qmodel.input_names, _output_names(qmodel), translation_table())


def dynamo_export(gm: torch.nn.Module, example: tuple[torch.Tensor, ...], input_names: tuple[str, ...],
                  output_names: list[str], custom_translation_table: dict[Any, Any] | None = None) -> onnx.ModelProto:
    """``torch.onnx.export(dynamo=True)`` with a dynamic batch on every input, and without the
    exporter's progress lines and warnings (the user gets our report, not torch's log). An equal graph exported
    earlier in this process is not exported again (``qconvert_onnx.export_cache``)."""
    from qconvert_onnx.export_cache import cached_export

    table = tuple(sorted(f"{k}->{getattr(v, '__qualname__', v)}" for k, v in (custom_translation_table or {}).items()))
    return cached_export(gm, example, (tuple(input_names), tuple(output_names), table),
                         lambda: _dynamo_export(gm, example, input_names, output_names, custom_translation_table))


def _dynamo_export(gm: torch.nn.Module, example: tuple[torch.Tensor, ...], input_names: tuple[str, ...],
                   output_names: list[str], custom_translation_table: dict[Any, Any] | None = None) -> onnx.ModelProto:
    batch = torch.export.Dim("batch", min=1, max=65536)
    dynamic = tuple({0: batch} for _ in example)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), shared_registry():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                gm, example, dynamo=True, dynamic_shapes=dynamic, input_names=list(input_names),
                output_names=output_names, verbose=False, custom_translation_table=custom_translation_table,
            )
    finally:
        quiet.setLevel(level)
    assert program is not None
    return program.model_proto


def _output_names(qmodel: QuantizedModel) -> list[str]:
    """The model's own output names (``logits``, ``hidden_states.2``): a board reads outputs by them."""
    names = list(qmodel.captured.output_names)
    n = len(qmodel.output_scales())
    if len(names) == n and len(set(names)) == n:
        return names
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


#: ONNX tensor types that Q/DQ carries only from opset 21 on (int16, uint16).
_WIDE_QDQ_TYPES = {onnx.TensorProto.INT16, onnx.TensorProto.UINT16}
WIDE_QDQ_OPSET = 21


def _wide_qdq(model: onnx.ModelProto) -> bool:
    """Whether a QuantizeLinear/DequantizeLinear of ``model`` stores 16-bit integers."""
    inits = {i.name: i.data_type for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            inits[n.output[0]] = n.attribute[0].t.data_type
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    return any(inits.get(n.input[2]) in _WIDE_QDQ_TYPES for n in qdq if len(n.input) > 2) or \
        any(inits.get(n.input[0]) in _WIDE_QDQ_TYPES for n in qdq if n.op_type == "DequantizeLinear")


def with_wide_qdq_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` converted to opset 21 when it has int16/uint16 Q/DQ (the exporter's opset 18-20 Q/DQ take
    8-bit types only, and onnxruntime refuses a 16-bit zero point there); unchanged otherwise."""
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset >= WIDE_QDQ_OPSET or not _wide_qdq(model):
        return model
    from onnx import version_converter

    return version_converter.convert_version(model, WIDE_QDQ_OPSET)


#: Parity tolerance of a model with 16-bit Q/DQ, in its (16-bit) output steps: onnxruntime has no int16
#: conv/gemm kernels and runs those ops in float32 between DequantizeLinear and QuantizeLinear, summing in
#: its own order; a float32 rounding difference flips a 16-bit step at a near-tie, and flips add up along
#: the chain (measured on digits: max 1 step with uint16, 2 with int16 activations).
WIDE_QDQ_TOLERANCE_LSB = 4.0


def export_qdq(qmodel: QuantizedModel, out_dir: Path, options: OnnxOptions, target: str) -> Artifact:
    model = export_onnx_model(qmodel)
    wide = _wide_qdq(model)
    model = with_wide_qdq_opset(model)
    clips = narrow_ranges(model, qmodel)
    pools = reduce_mean_to_global_pool(model)
    float_layers = keep_float_layers_float(model)
    if options.simplify:
        model = _simplify(model)
    # simulation quantize node -> ONNX tensor, for per-layer parity (qconvert_onnx.intermediates); paired before the
    # Pads move onto the integers, which keep each QuantizeLinear's output name
    quantized_tensors = map_quantized_tensors(model, qmodel)
    integer_pads = pad_on_integers(model)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, out_dir / options.file_name)
    return Artifact(
        target=target,
        directory=out_dir,
        main_file=options.file_name,
        input_names=tuple(i.name for i in model.graph.input),
        output_names=tuple(o.name for o in model.graph.output),
        notes=((f"16-bit Q/DQ: opset {WIDE_QDQ_OPSET}; onnxruntime runs the 16-bit ops in float between DequantizeLinear and "
                f"QuantizeLinear, so parity is judged within {WIDE_QDQ_TOLERANCE_LSB:g} steps"),) if wide else (),
        tolerance_lsb=WIDE_QDQ_TOLERANCE_LSB if wide else None,
        details=OnnxDetails(opset=max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                            weight_dequantize_nodes=weight_dequantize_count(model), narrow_range_clips=clips,
                            reduce_mean_as_global_pool=pools, float_layers_kept_float=float_layers,
                            pads_on_integers=integer_pads, quantized_tensors=quantized_tensors),
    )


def narrow_ranges(model: onnx.ModelProto, qmodel: QuantizedModel) -> int:
    """Bound sub-8-bit activations with a Clip between QuantizeLinear and its consumers.

    ONNX QuantizeLinear saturates to its storage type ([0, 255] for uint8), while a
    4-bit tensor must saturate to [0, 15]: an integer Clip (opset >= 12) restores
    exactly the simulation's rounding. Returns the number of Clips inserted.
    """
    narrow: dict[tuple[float, int], tuple[int, int]] = {}
    for n in qmodel.graph.graph.nodes:
        if n.target == torch.ops.quantized_decomposed.quantize_per_tensor.default:
            _, scale, zp, qmin, qmax, dtype = n.args[:6]
            info = torch.iinfo(dtype)
            if (qmin, qmax) != (info.min, info.max):
                narrow[(float(np.float32(scale)), int(zp))] = (int(qmin), int(qmax))
    if not narrow:
        return 0
    values = constant_values(model)
    inserted = 0
    for q in [n for n in model.graph.node if n.op_type == "QuantizeLinear"]:
        scale = values.get(q.input[1])
        zp = values.get(q.input[2]) if len(q.input) > 2 else None
        if scale is None or scale.size != 1:
            continue
        key = (float(np.float32(scale.reshape(()))), int(zp.reshape(())) if zp is not None else 0)
        if key not in narrow:
            continue
        qmin, qmax = narrow[key]
        dtype = zp.dtype if zp is not None else np.uint8
        lo_name, hi_name, out = f"{q.output[0]}_qmin", f"{q.output[0]}_qmax", f"{q.output[0]}_narrow"
        model.graph.initializer.extend([numpy_helper.from_array(np.array(qmin, dtype=dtype), lo_name),
                                        numpy_helper.from_array(np.array(qmax, dtype=dtype), hi_name)])
        for consumer in model.graph.node:
            for i, name in enumerate(consumer.input):
                if name == q.output[0]:
                    consumer.input[i] = out
        for o in model.graph.output:
            if o.name == q.output[0]:
                o.name = out
        clip = onnx.helper.make_node("Clip", [q.output[0], lo_name, hi_name], [out], name=f"{q.name}_narrow")
        model.graph.node.insert(list(model.graph.node).index(q) + 1, clip)
        inserted += 1
    return inserted
