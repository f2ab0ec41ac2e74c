#!/usr/bin/env python3
"""Build a TensorRT engine from the explicitly quantized ONNX that qconvert wrote next to this file.

qconvert's ``tensorrt`` target copies this module verbatim into its output as
``build_engine.py`` and calls the same ``build_engine`` itself where TensorRT and
a GPU are present. It needs only the standard library and ``tensorrt``:

    python build_engine.py                 # reads build_config.json beside it
    python build_engine.py --config other.json

The int8 ranges are in the ONNX as QuantizeLinear/DequantizeLinear pairs
(explicit quantization), so no calibrator runs. TensorRT 10: the INT8 and FP16
builder flags let layers without Q/DQ fall back to FP16. TensorRT 11 has no
INT8 flag: the network is built strongly typed and those layers run in FP32.
The engine is specific to the GPU, TensorRT and CUDA versions it was built with.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["BuildConfig", "BuildResult", "EngineBuildError", "InputProfile", "build_engine", "main"]


@dataclass(frozen=True)
class InputProfile:
    """Shapes of one input in the optimization profile (the batch dimension varies)."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class BuildConfig:
    """Everything the build needs; file names are relative to the config's folder."""

    onnx: str
    engine: str
    inputs: tuple[InputProfile, ...]
    fp16: bool = True
    workspace_mib: int = 1024
    timing_cache: str = "timing.cache"
    layer_info: str = "engine_layers.json"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> BuildConfig:
        raw = json.loads(text)
        inputs = tuple(
            InputProfile(p["name"], tuple(p["min"]), tuple(p["opt"]), tuple(p["max"])) for p in raw.pop("inputs")
        )
        return cls(inputs=inputs, **raw)


@dataclass(frozen=True)
class BuildResult:
    engine: Path
    tensorrt_version: str
    #: "INT8+FP16 flags" (TensorRT 10), "INT8 flag" (fp16 off) or "strongly typed" (TensorRT 11).
    precision_mode: str
    layer_info: Path


class EngineBuildError(RuntimeError):
    """TensorRT is missing, or could not parse or build the network."""


def build_engine(cfg: BuildConfig, directory: Path) -> BuildResult:
    """Parse the ONNX, build with a dynamic-batch profile and the timing cache, write the engine."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise EngineBuildError("tensorrt is not importable here: install it (pip install tensorrt) on a machine with an NVIDIA GPU") from e
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = not hasattr(trt.BuilderFlag, "INT8")
    flags = (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(directory / cfg.onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT cannot parse {cfg.onnx}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mib << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    mode = "strongly typed"
    if not strongly_typed:
        config.set_flag(trt.BuilderFlag.INT8)
        mode = "INT8 flag"
        if cfg.fp16:
            config.set_flag(trt.BuilderFlag.FP16)
            mode = "INT8+FP16 flags"
    profile = builder.create_optimization_profile()
    for p in cfg.inputs:
        profile.set_shape(p.name, p.min, p.opt, p.max)
    config.add_optimization_profile(profile)
    cache_file = directory / cfg.timing_cache
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError("TensorRT's builder returned no engine; its log above says why")
    engine_path = directory / cfg.engine
    engine_path.write_bytes(serialized)
    cache_file.write_bytes(cache.serialize())
    engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
    info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    layer_info = directory / cfg.layer_info
    layer_info.write_text(info)
    return BuildResult(engine_path, trt.__version__, mode, layer_info)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build the TensorRT engine for the qconvert ONNX in this folder.")
    ap.add_argument("--config", type=Path, default=Path(__file__).resolve().parent / "build_config.json",
                    help="build configuration written by qconvert (default: build_config.json beside this script)")
    args = ap.parse_args(argv)
    try:
        cfg = BuildConfig.from_json(args.config.read_text())
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"error: {args.config}: not a build configuration ({e})", file=sys.stderr)
        return 2
    try:
        result = build_engine(cfg, args.config.parent)
    except EngineBuildError as e:
        print(f"error: {e}; no engine was written", file=sys.stderr)
        return 1
    print(f"wrote {result.engine} (TensorRT {result.tensorrt_version}, {result.precision_mode}); layers: {result.layer_info}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
