"""The ``trtexec`` command line equivalent to ``build_engine.py``, for machines with TensorRT's CLI only."""

from __future__ import annotations

import shlex

from qconvert_tensorrt.engine_build import BuildConfig

__all__ = ["trtexec_args", "trtexec_script"]


def _shapes(cfg: BuildConfig, which: str) -> str:
    return ",".join(f"{p.name}:{'x'.join(str(d) for d in getattr(p, which))}" for p in cfg.inputs)


def trtexec_args(cfg: BuildConfig, strongly_typed: bool = False) -> list[str]:
    """TensorRT 10 flags; ``strongly_typed`` gives the TensorRT 11 form (no --int8/--fp16 there)."""
    args = [
        "trtexec", f"--onnx={cfg.onnx}", f"--saveEngine={cfg.engine}",
        f"--minShapes={_shapes(cfg, 'min')}", f"--optShapes={_shapes(cfg, 'opt')}", f"--maxShapes={_shapes(cfg, 'max')}",
    ]
    if strongly_typed:
        args.append("--stronglyTyped")
    else:
        args += ["--int8"] + (["--fp16"] if cfg.fp16 else [])
    return args + [
        f"--memPoolSize=workspace:{cfg.workspace_mib}M", f"--timingCacheFile={cfg.timing_cache}",
        "--profilingVerbosity=detailed", f"--exportLayerInfo={cfg.layer_info}", "--skipInference",
    ]


def trtexec_script(cfg: BuildConfig) -> str:
    """A shell script to run in the artifact folder."""
    ten = " ".join(shlex.quote(a) for a in trtexec_args(cfg))
    eleven = " ".join(shlex.quote(a) for a in trtexec_args(cfg, strongly_typed=True))
    return (
        "#!/bin/sh\n"
        "# Build the TensorRT engine for model.onnx with trtexec (same settings as build_engine.py).\n"
        "# Written by qconvert. Run in this folder on a machine with TensorRT and an NVIDIA GPU.\n"
        "set -e\ncd \"$(dirname \"$0\")\"\n"
        f"{ten}\n"
        "# TensorRT >= 11 has no --int8/--fp16 (explicit quantization only); use instead:\n"
        f"# {eleven}\n"
    )
