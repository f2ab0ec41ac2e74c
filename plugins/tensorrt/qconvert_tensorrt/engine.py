"""Whether an engine can be built here, and the build configuration for one quantized model.

Checked without side effects: importing ``tensorrt`` and asking CUDA for a device
count, so a machine without either gets a reason instead of a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import TYPE_CHECKING

from qconvert_tensorrt.engine_build import BuildConfig, InputProfile
from qconvert_tensorrt.options import TensorRTOptions

if TYPE_CHECKING:  # runtime_version() imports this module in 'qconvert verify', where torch may be absent
    from qconvert.targets import QuantizedModel

__all__ = ["EngineSupport", "build_config", "cudart", "engine_support"]


@dataclass(frozen=True)
class EngineSupport:
    ok: bool
    reason: str = ""
    version: str = ""


def cudart() -> ModuleType:
    """cuda-python's runtime bindings (module path changed in cuda-python 12.6)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime
    return runtime


@lru_cache(maxsize=1)
def engine_support() -> EngineSupport:
    """Can this machine build and run a TensorRT engine? Never raises."""
    try:
        import tensorrt
    except ImportError:
        return EngineSupport(False,
                             "tensorrt is not installed (it needs CUDA and an NVIDIA GPU: pip install 'qconvert-tensorrt[gpu]' there)")
    except Exception as e:  # noqa: BLE001 - a broken CUDA install fails at import with many exception types
        return EngineSupport(False, f"tensorrt does not import: {type(e).__name__}: {e}")
    try:
        rt = cudart()
    except ImportError:
        return EngineSupport(False, "cuda-python is not installed (pip install cuda-python), needed to run the engine")
    err, count = rt.cudaGetDeviceCount()
    if err != rt.cudaError_t.cudaSuccess or count == 0:
        return EngineSupport(False, "no CUDA GPU is visible")
    return EngineSupport(True, version=str(tensorrt.__version__))


def build_config(qmodel: QuantizedModel, options: TensorRTOptions) -> BuildConfig:
    """One optimization profile: every input's batch from min to max, the other dimensions fixed."""
    inputs = tuple(
        InputProfile(name, (options.min_batch, *rest), (options.opt_batch, *rest), (options.max_batch, *rest))
        for name, rest in ((n, tuple(int(d) for d in t.shape[1:])) for n, t in zip(qmodel.input_names, qmodel.example_inputs))
    )
    return BuildConfig(
        onnx=options.file_name, engine=options.engine_file, inputs=inputs, fp16=options.fp16,
        workspace_mib=options.workspace_mib, timing_cache=options.timing_cache,
    )
