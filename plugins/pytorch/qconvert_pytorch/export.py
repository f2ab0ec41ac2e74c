"""Write the ``pytorch`` artifact: an ExportedProgram for inductor, or TorchScript of quantized modules.

inductor (x86): the Q/DQ graph itself, saved with ``torch.export.save``. Under
``torch.compile`` with inductor's ``freezing`` on, inductor's quantization passes
fuse dequantize -> conv/linear -> quantize into oneDNN int8 kernels (qconv/qlinear
with prepacked weights). This is the int8 path torch keeps developing (torch.ao's
eager/FX flows are deprecated) and the fastest on x86; it needs a C++ compiler
where the model runs. AOTInductor packages were tried and left out: in torch 2.13
they lower the same graph to oneDNN int8 kernels but return wrong results.

quantized_modules (qnnpack, or any dynamic quantization): torch.ao's quantized and
dynamic quantized modules, scripted to TorchScript, run by the engine set when the
file is loaded. No compiler is needed, and it is the only int8 form for qnnpack
(ARM) and for dynamic LSTM/GRU.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch

from qconvert.targets import Artifact, ConstraintError, QuantizedModel, RecipeError, TargetUnavailableError
from qconvert_pytorch.details import PytorchDetails
from qconvert_pytorch.engine import cpp_compiler, quantized_engine
from qconvert_pytorch.lower import lower_to_quantized_modules
from qconvert_pytorch.options import Lowering, PyTorchOptions
from qconvert_pytorch.reproducible import save_reproducible

__all__ = ["emit_pytorch", "export_program", "is_dynamic", "narrow_activations", "resolve_lowering", "script_module"]

PROGRAM_FILE = "model.pt2"
SCRIPT_FILE = "model.pt"

#: Parity with the simulation in output steps, measured on the samples and tests (see README).
#: Static: oneDNN and fbgemm requantize like the simulation, <= 1 step; qnnpack requantizes with
#: its own fp32 multiplier and rounds the float bias to int32 itself, <= 2 steps on digits.
#: Dynamic: the kernels pick each batch's input scale in double precision and quantize by
#: multiplying with its inverse, so an input lying on a rounding tie can land one code away from
#: the simulation's; dynamic LSTM/GRU also quantize every step's activations, which the
#: simulation keeps float. Measured up to 2.3 steps (text sample, LSTM/GRU tests): declared 4.
TOLERANCE_LSB = {"x86": 1.0, "qnnpack": 2.0}
DYNAMIC_TOLERANCE_LSB = 4.0


def is_dynamic(qmodel: QuantizedModel) -> bool:
    return any(tq.dynamic for tq in qmodel.decisions.values())


def narrow_activations(qmodel: QuantizedModel) -> bool:
    """Static activations below 8 bits: inductor's fused int8 kernels saturate to the full uint8
    range instead (3 output steps off on digits at 4 bits), the quantized-modules lowering does not."""
    return any(tq.role == "activation" and not tq.dynamic and tq.scheme.bits < 8 for tq in qmodel.decisions.values())


def resolve_lowering(options: PyTorchOptions, qmodel: QuantizedModel, source: str = "recipe") -> Lowering:
    """The lowering ``auto`` stands for, or an error naming the option that cannot work."""
    dynamic, narrow = is_dynamic(qmodel), narrow_activations(qmodel)
    if options.lowering == "auto":
        # Without a C++ compiler torch.compile cannot run here: the x86 quantized modules still are int8.
        inductor = options.backend == "x86" and not dynamic and not narrow and cpp_compiler() is not None
        return "inductor" if inductor else "quantized_modules"
    if options.lowering == "inductor" and dynamic:
        raise RecipeError(f"{source}: targets.pytorch.lowering: dynamic quantization runs as torch.ao dynamic quantized "
                          "modules; use lowering: quantized_modules (or auto)")
    if options.lowering == "inductor" and narrow:
        raise RecipeError(f"{source}: targets.pytorch.lowering: inductor's int8 kernels cannot saturate activations "
                          "below 8 bits; use lowering: quantized_modules (or auto)")
    return options.lowering


def export_program(qmodel: QuantizedModel) -> torch.export.ExportedProgram:
    """The Q/DQ graph as an ExportedProgram with a dynamic batch dimension."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    dynamic = tuple({0: batch} for _ in qmodel.example_inputs)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return torch.export.export(qmodel.graph, qmodel.example_inputs, dynamic_shapes=dynamic, strict=False)


def script_module(qmodel: QuantizedModel, backend: str) -> torch.jit.ScriptModule:
    """Quantized modules packed for ``backend``, scripted."""
    with quantized_engine(backend), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lowered = lower_to_quantized_modules(qmodel.graph, qmodel.input_names)
        return torch.jit.script(lowered.eval())


def _inductor_failure(qmodel: QuantizedModel, program: Path) -> str | None:
    """Compile and run the saved program once, at the batch size verification uses (the compiled
    program is cached for it): None when inductor takes it, else the first line of why not."""
    from qconvert_pytorch.engine import inductor_freezing
    from qconvert_pytorch.runtime import load_compiled

    batch = qmodel.recipe.calibration.batch_size
    try:
        with warnings.catch_warnings(), inductor_freezing(), torch.no_grad():
            warnings.simplefilter("ignore")
            load_compiled(str(program), program.stat().st_mtime)(*qmodel.example_inputs_at(batch))
    except Exception as e:  # noqa: BLE001 -- inductor raises many types; every one means "cannot lower"
        text = str(e).strip().splitlines()
        return f"{type(e).__name__}: {text[0] if text else ''}"[:240]
    return None


def emit_pytorch(qmodel: QuantizedModel, out_dir: Path, options: PyTorchOptions, target: str) -> Artifact:
    lowering = resolve_lowering(options, qmodel)
    notes: tuple[str, ...] = ()
    if options.lowering == "auto" and lowering == "quantized_modules" and options.backend == "x86" and cpp_compiler() is None:
        notes = ("no C++ compiler here for inductor: lowered to TorchScript quantized modules (install g++ for the faster .pt2)",)
    if lowering == "inductor":
        if cpp_compiler() is None:
            raise TargetUnavailableError(
                "target 'pytorch': lowering inductor needs a C++ compiler for torch.compile (install g++, or set $CXX), "
                "or set targets.pytorch.lowering: quantized_modules")
        save_reproducible(export_program(qmodel), out_dir / PROGRAM_FILE)
        main = PROGRAM_FILE
        failure = _inductor_failure(qmodel, out_dir / PROGRAM_FILE)
        if failure is not None and options.lowering == "inductor":
            raise ConstraintError(f"target 'pytorch': inductor cannot compile this model ({failure}); "
                                  "set targets.pytorch.lowering: quantized_modules (or auto)")
        if failure is not None:
            (out_dir / PROGRAM_FILE).unlink()
            lowering = "quantized_modules"
            notes = (f"inductor could not compile this model ({failure}): lowered to TorchScript quantized modules",)
    if lowering == "quantized_modules":
        try:
            scripted = script_module(qmodel, options.backend)
        except Exception as e:  # lowering or scripting an op it has no quantized module for
            text = str(e).strip().splitlines()
            raise ConstraintError(f"target 'pytorch': no int8 PyTorch form for this model: neither inductor nor torch.ao's "
                                  f"quantized modules take it ({type(e).__name__}: {text[0] if text else ''}"[:400]
                                  + "); build it for onnx or tflite, or exclude the layers named") from e
        scripted.save(str(out_dir / SCRIPT_FILE))
        main = SCRIPT_FILE
    outputs = len(qmodel.output_scales())
    return Artifact(
        target=target, directory=out_dir, main_file=main, input_names=qmodel.input_names,
        output_names=("output",) if outputs == 1 else tuple(f"output_{i}" for i in range(outputs)),
        details=PytorchDetails(backend=options.backend, lowering=lowering, dynamic=is_dynamic(qmodel)), notes=notes,
        tolerance_lsb=DYNAMIC_TOLERANCE_LSB if is_dynamic(qmodel) else TOLERANCE_LSB[options.backend],
    )
