"""Convert the core's Q/DQ graph to a full-integer .tflite with litert-torch.

litert-torch lowers the PT2E graph through StableHLO to TFLite; in its static Q/DQ
mode it fuses every dequantize -> op -> quantize group into an int8 TFLite op and
drops the edge quantize/dequantize, which gives int8 inputs and outputs. Float
I/O puts QUANTIZE/DEQUANTIZE back at the edges (``flatbuffer.float_edges``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from qconvert.targets import Artifact, BadInputError, QuantizedModel
from qconvert_tflite.details import Int8Edge, TfliteDetails
from qconvert_tflite.flatbuffer import EdgeQuant, Inventory, float_edges, inventory, widen_16x8_biases
from qconvert_tflite.graph import litert_ready
from qconvert_tflite.narrow import Grid, bound_narrow_ranges, bounded_count
from qconvert_tflite.options import TFLiteOptions

__all__ = ["TFLiteConversionError", "convert_tflite", "export_tflite", "quiet_litert"]


class TFLiteConversionError(BadInputError):
    """The model has something litert-torch cannot lower to TFLite (exit 2, one line)."""


def _static_qdq_config() -> object:
    """A quant config whose only effect is to put the converter in static Q/DQ mode.

    The graph is already quantized; the PT2E quantizer inside is never run.
    """
    from litert_torch.quantize import pt2e_quantizer, quant_config

    q = pt2e_quantizer.PT2EQuantizer().set_global(pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
    return quant_config.QuantConfig(pt2e_quantizer=q)


@contextlib.contextmanager
def quiet_litert() -> Iterator[Path]:
    """Silence litert-torch's progress lines, Python warnings and the C++ log on fd 2.

    Everything is restored in ``finally``; the captured C++ log is kept in the yielded
    file so a failure can quote it.
    """
    saved_env = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    root = logging.getLogger()
    saved_level = root.level
    log = Path(tempfile.mkstemp(prefix="qconvert-litert-", suffix=".log")[1])
    saved_fd = os.dup(2)
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    root.setLevel(logging.ERROR)
    try:
        with open(log, "wb") as sink, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            os.dup2(sink.fileno(), 2)
            try:
                yield log
            finally:
                os.dup2(saved_fd, 2)
    finally:
        os.close(saved_fd)
        root.setLevel(saved_level)
        if saved_env is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = saved_env


def _tail(log: Path, lines: int = 3) -> str:
    text = [ln for ln in log.read_text(errors="replace").splitlines() if "error" in ln.lower()]
    return " | ".join(text[-lines:])


def convert_tflite(qmodel: QuantizedModel, batch: int) -> bytes:
    """The full-integer .tflite (int8 edges) of ``qmodel`` at a fixed batch size."""
    sample = tuple(t[:1].repeat(batch, *([1] * (t.dim() - 1))) for t in qmodel.example_inputs)
    with quiet_litert() as log:
        import litert_torch  # inside: its import prints oneDNN and deprecation lines

        graph = litert_ready(qmodel.graph)  # deepcopy warns about torch pytree internals

        try:
            with torch.no_grad():
                edge_model = litert_torch.convert(graph, sample, quant_config=_static_qdq_config())
                content = edge_model.model_content()
        except Exception as e:  # litert-torch raises ValueError/RuntimeError/jax errors alike
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            detail = _tail(log)
            raise TFLiteConversionError(f"litert-torch cannot convert the quantized model: {first}"
                                        + (f" (converter log: {detail})" if detail else "")) from e
    log.unlink(missing_ok=True)
    bounded, _ = bound_narrow_ranges(bytes(content), narrow_grids(qmodel))
    return widen_16x8_biases(bounded)


def narrow_grids(qmodel: QuantizedModel) -> dict[Grid, tuple[int, int]]:
    """(float32 scale, int8 zero point) -> int8 range of every 8-bit activation quantized to fewer than 8 bits.

    uint8 grids are stored as int8 with zero point and range moved by -128 (the same values).
    """
    import numpy as np

    out: dict[Grid, tuple[int, int]] = {}
    for n in qmodel.graph.graph.nodes:
        if n.target != torch.ops.quantized_decomposed.quantize_per_tensor.default:
            continue
        _, scale, zp, qmin, qmax, dtype = n.args[:6]
        shift = {torch.uint8: -128, torch.int8: 0}.get(dtype)
        if shift is None or (int(qmin) + shift, int(qmax) + shift) == (-128, 127):
            continue
        out[(float(np.float32(scale)), int(zp) + shift)] = (int(qmin) + shift, int(qmax) + shift)
    return out


def _edge(e: EdgeQuant, name: str) -> Int8Edge:
    return Int8Edge(name=name, dtype=e.dtype, shape=list(e.shape), scale=e.scale, zero_point=e.zero_point)


#: Parity tolerance, in 16-bit output steps, of a 16x8 model: its kernels requantize with 32-bit
#: multipliers and the int16 ADD pre-shifts by 15 bits, roundings that show as several of the 256x finer
#: 16-bit steps (measured on digits: max 4 steps, 0.016 of an 8-bit step).
TOLERANCE_16X8_LSB = 8.0
_NOTE_16X8 = f"16x8 mode (int16 activations, int8 weights, int64 biases): parity within {TOLERANCE_16X8_LSB:g} 16-bit steps"


def export_tflite(qmodel: QuantizedModel, out_dir: Path, options: TFLiteOptions, target: str) -> Artifact:
    content = convert_tflite(qmodel, options.batch)
    int8_inv = inventory(content)
    wide = any(e.dtype == "int16" for e in int8_inv.inputs + int8_inv.outputs)
    if options.io == "float":
        content = float_edges(content)
    inv = inventory(content)
    (out_dir / options.file_name).write_bytes(content)
    n_out = len(inv.outputs)
    outputs = ("output",) if n_out == 1 else tuple(f"output_{i}" for i in range(n_out))
    return Artifact(
        target=target,
        directory=out_dir,
        main_file=options.file_name,
        input_names=qmodel.input_names,
        output_names=outputs,
        notes=_notes(qmodel, options, int8_inv, content) + (_NOTE_16X8,) * wide,
        tolerance_lsb=TOLERANCE_16X8_LSB if wide else None,
        details=TfliteDetails(
            io=options.io,
            batch=options.batch,
            # What a device needs to feed raw int8 and read int8: the quantized edges of the graph.
            int8_inputs=[_edge(e, n) for e, n in zip(int8_inv.inputs, qmodel.input_names)],
            int8_outputs=[_edge(e, n) for e, n in zip(int8_inv.outputs, outputs)],
            op_counts=inv.op_counts,
            float_ops=list(int8_inv.float_ops),
            narrow_range_bounds=bounded_count(content),
        ),
    )


def _notes(qmodel: QuantizedModel, options: TFLiteOptions, inv: Inventory, content: bytes) -> tuple[str, ...]:
    notes = [f"fixed batch {options.batch} (litert-torch lowers static shapes); larger inputs run in chunks"]
    requested = [qmodel.recipe.activations] + [o.activations for o in qmodel.recipe.overrides if o.activations]
    if any(s.mode == "asym_u" and s.bits <= 8 for s in requested):
        notes.append("asym_u activations stored as int8 with zero point - 128 (the same grid)")
    bounded = bounded_count(content)
    if bounded:
        notes.append(f"{bounded} sub-8-bit activation(s) bounded to their own range by int8 MINIMUM/MAXIMUM ops (TFLite "
                     "saturates to the int8 range only); XNNPACK takes float MINIMUM/MAXIMUM only, so these run in "
                     "LiteRT's reference kernels between delegate partitions")
    if inv.float_ops:
        notes.append(f"not full-integer: {len(inv.float_ops)} op(s) run in float ({', '.join(sorted(set(inv.float_ops)))})")
    return tuple(notes)
