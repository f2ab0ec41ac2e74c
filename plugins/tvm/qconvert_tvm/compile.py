"""Compile an ONNX QDQ model with TVM Relax for one LLVM target and export it.

The model is imported as it is, with its dynamic batch. Where TVM's Relax frontend cannot import
that (a Resize whose size comes from the input's shape, a Max broadcasting a symbolic dimension,
an LSTM, which it has no converter for), it is imported again with the batch fixed to 1 and every
default LSTM unrolled (``unroll.py``); the library then takes one sample per call, and the runtime
runs a batch sample by sample. What still fails is refused in one line naming the op's converter.

Host targets give a shared library the Relax VM loads. A foreign architecture is
cross-linked with ``<mtriple>-g++`` when that toolchain is installed; without it
the object files go into a ``.tar`` (``tvm.runtime.load_module`` links them on the
board) next to the Relax module as JSON, and the artifact is not runnable here.
"""

from __future__ import annotations

import contextlib
import gc
import io
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from qconvert.targets import BadInputError
from qconvert_tvm.target_spec import TargetSpec

__all__ = ["STATIC_BATCH", "Compiled", "Imported", "TvmCompileError", "compile_onnx", "import_model"]

#: The batch a model is fixed to where TVM cannot import its dynamic batch.
STATIC_BATCH = 1


class TvmCompileError(BadInputError):
    """TVM rejects the target or cannot import/compile the model (exit 2, one line)."""


@dataclass(frozen=True)
class Compiled:
    """What ``compile_onnx`` wrote: the file to load, whether it runs here, and why not."""

    main_file: str
    runnable: bool
    files: tuple[str, ...]
    notes: tuple[str, ...]
    target_json: str
    #: The ONNX model the library was compiled from (``model`` itself, or its static-batch copy).
    model: onnx.ModelProto
    #: The batch the library was compiled for; None: any batch.
    static_batch: int | None = None


@dataclass(frozen=True)
class Imported:
    """The Relax module of an ONNX model, the model it was imported from, and its fixed batch (None: dynamic)."""

    module: Any
    model: onnx.ModelProto
    static_batch: int | None
    notes: tuple[str, ...] = ()


def _tvm_target(spec: TargetSpec) -> Any:
    import tvm

    try:
        return tvm.target.Target(spec.as_tvm())
    except Exception as e:  # TVM raises ValueError/TVMError for unknown keys and values
        raise TvmCompileError(f"targets.tvm.target: TVM rejects '{spec.text}': {str(e).splitlines()[0][:200]}") from e


def _relax_module(model: onnx.ModelProto) -> Any:
    from tvm.relax.frontend.onnx import from_onnx

    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return from_onnx(model, keep_params_in_input=False)
    except Exception as e:  # noqa: BLE001 - any ONNX op or attribute the Relax frontend does not cover; re-raised below
        op = _failing_converter(e)
        where = f" at its {op} converter" if op else ""
        message = (f"TVM's Relax ONNX frontend cannot import the model{where}: {type(e).__name__}: "
                   f"{(str(e).splitlines() or [''])[0][:200]}; build this model for the onnx target (onnxruntime "
                   "runs it), or exclude the layers that produce that op")
        e.__traceback__ = None
    # The failed frontend's frames hold a half-built BlockBuilder whose C++ destructor warns on
    # stderr. Free them now, while the build's output capture is active, not at interpreter exit
    # where the warning would land on the user's terminal after our one-line error.
    gc.collect()
    raise TvmCompileError(message)


def _dynamic_batch(model: onnx.ModelProto) -> bool:
    return any(i.type.tensor_type.shape.dim and not i.type.tensor_type.shape.dim[0].HasField("dim_value")
               for i in model.graph.input)


def _with_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """A copy of ``model`` whose inputs' and outputs' symbolic first dimension is ``batch``."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for v in [*out.graph.input, *out.graph.output]:
        dims = v.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch
    del out.graph.value_info[:]  # intermediate shapes were inferred with the symbolic batch
    return out


def import_model(model: onnx.ModelProto) -> Imported:
    """``model`` as a Relax module: with its dynamic batch where TVM imports it, else at ``STATIC_BATCH``."""
    from qconvert_tvm.unroll import unroll_lstms

    try:
        return Imported(_relax_module(model), model, None)
    except TvmCompileError as first:
        if not _dynamic_batch(model):
            raise
        reason = str(first)
    static, unrolled = unroll_lstms(_with_batch(model, STATIC_BATCH))
    module = _relax_module(static)
    lstms = f" with {unrolled} LSTM(s) unrolled into their gate ops" if unrolled else ""
    note = (f"{reason.split(': ', 1)[0][:120]} with a dynamic batch; compiled for batch {STATIC_BATCH}{lstms}: "
            "the library takes one sample per call")
    return Imported(module, static, STATIC_BATCH, (note,))


def _failing_converter(e: BaseException) -> str | None:
    """The ONNX op whose Relax converter raised (the innermost converter class on the traceback)."""
    found = None
    tb = e.__traceback__
    while tb is not None:
        cls = tb.tb_frame.f_locals.get("cls")
        if isinstance(cls, type) and "onnx_frontend" in (cls.__module__ or ""):
            found = cls.__name__
        tb = tb.tb_next
    return found


def compile_onnx(model: onnx.ModelProto, spec: TargetSpec, out_dir: Path, file_name: str, cross_compiler: str | None) -> Compiled:
    """Build ``model`` for ``spec`` into ``out_dir``; see the module docstring for the three outcomes."""
    from tvm import relax

    target = _tvm_target(spec)
    imported = import_model(model)
    executable = relax.build(imported.module, target=target)
    target_json = str(target)
    if spec.is_host:
        executable.export_library(str(out_dir / file_name))
        return Compiled(file_name, True, (file_name,), imported.notes, target_json, imported.model, imported.static_batch)
    cc = cross_compiler or f"{spec.mtriple}-g++"
    if shutil.which(cc):
        from tvm.support import cc as tvm_cc

        executable.export_library(str(out_dir / file_name), fcompile=tvm_cc.cross_compiler(cc))
        note = f"cross-compiled for {spec.arch} with {cc}; load it on the board with the TVM runtime (not run here)"
        return Compiled(file_name, False, (file_name,), (*imported.notes, note), target_json, imported.model, imported.static_batch)
    return _without_toolchain(imported, executable, spec, out_dir, cc, target_json)


def _without_toolchain(imported: Imported, executable: Any, spec: TargetSpec, out_dir: Path, cc: str, target_json: str) -> Compiled:
    import tvm

    objects, relax_json = "model.tar", "model.relax.json"
    executable.export_library(str(out_dir / objects))
    (out_dir / relax_json).write_text(tvm.ir.save_json(imported.module))
    note = (f"no cross toolchain for {spec.arch} ('{cc}' is not on PATH): wrote the Relax module ({relax_json}) and "
            f"unlinked {spec.arch} object files ({objects}; tvm.runtime.load_module links them on the board); not run here")
    return Compiled(objects, False, (objects, relax_json), (*imported.notes, note), target_json, imported.model,
                    imported.static_batch)
