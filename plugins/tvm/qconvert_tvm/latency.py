"""Latency of the TVM library against the float model compiled the same way, both in the Relax VM.

The float model is the captured float graph exported to ONNX (``qconvert_onnx.export.export_float_model``)
and built by ``compile_onnx`` for the artifact's own target. Both libraries are loaded as ``run``'s
worker loads them (``tvm.runtime.load_module`` -> ``relax.VirtualMachine(mod, tvm.cpu())``), here in
this process so that no pipe is timed, and ``main`` of each is timed in turn by ``qconvert.verify.timing``.
Only a library built for this host is measured. The export has a dynamic batch; where the ONNX the
library was compiled from fixes one, only that batch size is measured.

Node counts: TVM cannot tell after lowering, but its CPU pipeline (legalize, fold constants, fuse)
keeps every op's dtype, so the Relax module the library is built from says which arithmetic runs. The
Relax ONNX frontend keeps QuantizeLinear/DequantizeLinear and computes the ops between them in float32,
so every compute op of a QDQ model counts as float here. Counted: convolutions and matmuls on the
input's data path, and element-wise/reduction ops whose tensor operands all depend on the input
(a bias add or a constant scale is part of its layer, as in a fused ONNX or TFLite op).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from qconvert.targets import Artifact, Latency
from qconvert_tvm.details import TvmDetails
from qconvert_tvm.options import TvmOptions
from qconvert_tvm.target_spec import parse_target

if TYPE_CHECKING:
    from qconvert.targets import QuantizedModel

__all__ = ["ELEMENTWISE_OPS", "LAYER_OPS", "count_int8_nodes", "measure_latency"]

#: Ops counted when their first operand is on the input's data path (the second is a weight).
LAYER_OPS = frozenset({"relax.nn.conv1d", "relax.nn.conv2d", "relax.nn.conv3d", "relax.nn.conv1d_transpose",
                       "relax.nn.conv2d_transpose", "relax.matmul", "relax.nn.dense"})
#: Ops counted when every tensor operand is on the input's data path (a residual add, not a bias add).
ELEMENTWISE_OPS = frozenset({"relax.add", "relax.subtract", "relax.multiply", "relax.divide", "relax.mean", "relax.sum",
                             "relax.nn.avg_pool2d", "relax.nn.adaptive_avg_pool2d", "relax.nn.softmax", "relax.sigmoid",
                             "relax.tanh", "relax.nn.layer_norm", "relax.nn.gelu"})
_INTEGER = frozenset({"int8", "uint8", "int16"})


def _static_batch(model: onnx.ModelProto) -> int | None:
    """The batch the model's first input fixes, or None where it is dynamic."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return int(dims[0].dim_value) if dims and dims[0].HasField("dim_value") else None




def _vm(path: Path) -> Any:
    import tvm
    from tvm import relax

    return relax.VirtualMachine(tvm.runtime.load_module(str(path)), tvm.cpu())


def measure_latency(qmodel: QuantizedModel, artifact: Artifact, options: TvmOptions, batch_sizes: tuple[int, ...],
                    runtime: str, budget_s: float = 1.0) -> Latency | None:
    import tvm
    from qconvert_onnx.export import export_float_model

    from qconvert.targets import interleaved_ms
    from qconvert_tvm.compile import compile_onnx

    spec = parse_target(options.target)
    if not artifact.runnable or not spec.is_host:
        return None
    qdq = onnx.load(str(artifact.directory / TvmDetails.of(artifact).compiled_from))
    static = _static_batch(qdq)
    batches = batch_sizes if static is None else (static,)
    int8_ms, float_ms = [], []
    with tempfile.TemporaryDirectory() as tmp:
        built = compile_onnx(export_float_model(qmodel), spec, Path(tmp), "float.so", options.cross_compiler)
        vms = {"int8": _vm(artifact.path), "float": _vm(Path(tmp) / built.main_file)}
        for b in batches:
            args = [tvm.runtime.tensor(t.numpy()) for t in qmodel.example_inputs_at(b)]
            ms = interleaved_ms({name: _caller(vm, args) for name, vm in vms.items()}, budget_s)
            int8_ms.append(ms["int8"])
            float_ms.append(ms["float"])
    int8_nodes, float_nodes, float_ops = count_int8_nodes(qdq)
    return Latency(runtime, tuple(batches), tuple(int8_ms), tuple(float_ms), int8_nodes, float_nodes, float_ops)


def _caller(vm: Any, args: list[Any]) -> Any:
    main = vm["main"]
    return lambda: main(*args)


def count_int8_nodes(model: onnx.ModelProto) -> tuple[int, int, tuple[str, ...]]:
    """(integer compute ops, float compute ops, float op names) of the Relax module TVM builds from ``model``."""
    from tvm import relax

    from qconvert_tvm.compile import _relax_module

    dtypes = [d for f in _relax_module(model).functions.values() if isinstance(f, relax.Function) for d in _compute_ops(f)]
    floats = [name for name, dtype in dtypes if dtype.startswith("float")]
    return sum(dtype in _INTEGER for _, dtype in dtypes), len(floats), tuple(sorted(set(floats)))


def _compute_ops(func: Any) -> list[tuple[str, str]]:
    """(op name, input dtype) of each compute op of a Relax function on its inputs' data path."""
    import tvm
    from tvm import relax

    on_path: set[Any] = set(func.params)

    def on(expr: Any) -> bool:
        return any(v in on_path for v in relax.analysis.free_vars(expr))

    ops = []
    for block in func.body.blocks:
        for binding in block.bindings:
            value = binding.value
            if not on(value):
                continue
            on_path.add(binding.var)
            if not isinstance(value, relax.Call) or not isinstance(value.op, tvm.ir.Op):
                continue
            tensors = [a for a in value.args if not isinstance(a, relax.ShapeExpr)]
            name = str(value.op.name)
            if name in LAYER_OPS and on(tensors[0]) or name in ELEMENTWISE_OPS and all(on(a) for a in tensors):
                dtype = str(getattr(getattr(tensors[0], "ty", None), "dtype", ""))
                ops.append((name.removeprefix("relax.").removeprefix("nn."), dtype))
    return ops
