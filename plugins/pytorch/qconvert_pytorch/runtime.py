"""Run a ``pytorch`` artifact the way its README section tells users to: torch only, no qconvert.

inductor: ``torch.export.load`` then ``torch.compile`` with freezing (oneDNN int8
kernels); quantized_modules: ``torch.jit.load`` under the artifact's quantized engine.
Loaded programs are cached per file, so verifying batch after batch compiles once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qconvert_pytorch.engine import inductor_freezing, quantized_engine

__all__ = ["load_compiled", "load_scripted", "run_pytorch"]


class FixedBatch:
    """A compiled program run at one batch size: inductor's int8 convolution lowering in
    torch 2.13 fails with a symbolic batch dimension, so the program is compiled for the
    first batch size it sees and other batches are split or zero-padded to it. Rows are
    independent in a statically quantized model, so padding changes no result."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn, self.batch = fn, 0

    def __call__(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = tensors[0].shape[0]
        self.batch = self.batch or n
        parts: list[tuple[torch.Tensor, ...]] = []
        for start in range(0, n, self.batch):
            chunk = [t[start : start + self.batch] for t in tensors]
            rows = chunk[0].shape[0]
            if rows < self.batch:
                chunk = [torch.cat([c, c.new_zeros((self.batch - rows, *c.shape[1:]))]) for c in chunk]
            out = self.fn(*chunk)
            parts.append(tuple(o[:rows] for o in (out if isinstance(out, (tuple, list)) else (out,))))
        return tuple(torch.cat(p) for p in zip(*parts))


@lru_cache(maxsize=4)
def load_compiled(path: str, mtime: float) -> FixedBatch:
    """The ExportedProgram compiled by inductor (compilation happens at the first call)."""
    import torch.ao.quantization.fx._decomposed  # registers the quantize/dequantize ops of the graph

    program = torch.export.load(path)
    return FixedBatch(torch.compile(program.module(), dynamic=False))


@lru_cache(maxsize=4)
def load_scripted(path: str, mtime: float, backend: str) -> torch.jit.ScriptModule:
    with quantized_engine(backend):
        return torch.jit.load(path)


def run_pytorch(path: Path, lowering: str, backend: str, input_names: tuple[str, ...],
                inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    tensors = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in input_names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if lowering == "inductor":
            with inductor_freezing():
                out = load_compiled(str(path), path.stat().st_mtime)(*tensors)
        else:
            with quantized_engine(backend), torch.no_grad():
                out = load_scripted(str(path), path.stat().st_mtime, backend)(*tensors)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [np.asarray(o.detach().numpy()) for o in outs]
