"""Write the tensorrt artifact folder, and build the engine where TensorRT and a GPU are present.

Always written: the ONNX, ``build_config.json``, ``build_engine.py`` (the very
module that builds engines here), ``trtexec.sh`` and the layer-precision
prediction. The artifact's notes and ``details.engine`` say whether an engine
was built and why not, so no report can mistake the onnxruntime check for one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from qconvert_onnx.intermediates import map_quantized_tensors

from qconvert.targets import Artifact, QConvertError, QuantizedModel, TargetUnavailableError
from qconvert_tensorrt import engine_build
from qconvert_tensorrt.details import EngineFiles, TensorRTDetails
from qconvert_tensorrt.engine import build_config, engine_support
from qconvert_tensorrt.engine_build import BuildConfig, EngineBuildError, build_engine
from qconvert_tensorrt.export import export_for_tensorrt
from qconvert_tensorrt.options import TensorRTOptions
from qconvert_tensorrt.precision import predict_precision, summary_line, write_precision
from qconvert_tensorrt.trtexec import trtexec_script

__all__ = ["EngineStatus", "emit_tensorrt"]

SCRIPT, CONFIG, TRTEXEC = "build_engine.py", "build_config.json", "trtexec.sh"


@dataclass(frozen=True)
class EngineStatus:
    built: bool
    reason: str


def emit_tensorrt(qmodel: QuantizedModel, out_dir: Path, options: TensorRTOptions, target: str) -> Artifact:
    model = export_for_tensorrt(qmodel, out_dir / options.file_name)
    cfg = build_config(qmodel, options)
    _write_build_files(cfg, out_dir)
    status = _engine(cfg, out_dir, options)
    rows = predict_precision(model, options.fp16)
    write_precision(rows, out_dir, status.built)
    return Artifact(
        target=target,
        directory=out_dir,
        main_file=options.engine_file if status.built else options.file_name,
        input_names=tuple(i.name for i in model.graph.input),
        output_names=tuple(o.name for o in model.graph.output),
        notes=(_engine_note(status, options), summary_line(rows), *_parity_note(qmodel)),
        runs_in="" if status.built else "ONNX in onnxruntime, engine not built",
        details=TensorRTDetails(
            onnx=options.file_name,
            opset=max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
            placement="tensorrt",
            engine=EngineFiles(built=status.built, reason=status.reason, file=options.engine_file, script=SCRIPT, config=CONFIG,
                               trtexec=TRTEXEC),
            layer_precision=dict(Counter(r.precision for r in rows)),
            # simulation quantize node -> ONNX tensor: per-layer parity of the ONNX in onnxruntime
            quantized_tensors=map_quantized_tensors(model, qmodel),
        ),
    )


def _write_build_files(cfg: BuildConfig, out_dir: Path) -> None:
    (out_dir / CONFIG).write_text(cfg.to_json())
    for name, text in ((SCRIPT, Path(engine_build.__file__).read_text()), (TRTEXEC, trtexec_script(cfg))):
        (out_dir / name).write_text(text)
        (out_dir / name).chmod(0o755)


def _engine(cfg: BuildConfig, out_dir: Path, options: TensorRTOptions) -> EngineStatus:
    if options.engine == "skip":
        return EngineStatus(False, "targets.tensorrt.engine is 'skip'")
    support = engine_support()
    if not support.ok:
        if options.engine == "require":
            raise TargetUnavailableError("target 'tensorrt': the recipe requires an engine (targets.tensorrt.engine: require) but "
                                         f"{support.reason}")
        return EngineStatus(False, support.reason)
    try:
        result = build_engine(cfg, out_dir)
    except EngineBuildError as e:
        if options.engine == "require":
            raise QConvertError(f"target 'tensorrt': engine build failed: {e}") from e
        return EngineStatus(False, f"the engine build failed: {e}")
    return EngineStatus(True, f"TensorRT {result.tensorrt_version}, {result.precision_mode}")


def _engine_note(status: EngineStatus, options: TensorRTOptions) -> str:
    batches = f"batch {options.min_batch}..{options.max_batch} (tuned for {options.opt_batch})"
    if status.built:
        return f"TensorRT engine built and run here ({status.reason}, {batches}); parity below is the engine's"
    return (
        f"TensorRT engine NOT built: {status.reason}. What ran here is the ONNX in onnxruntime (CPU), against the "
        f"simulation. To build the engine on a machine with TensorRT and an NVIDIA GPU, run {SCRIPT} or {TRTEXEC} "
        f"in this folder ({batches})"
    )


def _parity_note(qmodel: QuantizedModel) -> tuple[str, ...]:
    steps, scales = qmodel.parity_steps(), qmodel.output_scales()
    if scales[0] is None and steps[0] is not None:
        return ((f"the output stays float (TensorRT needs no Q after the last GEMM): parity is in steps of {steps[0]:.4g}, "
                 "the scale that output would have as int8 from its calibration statistics"),)
    return ()
