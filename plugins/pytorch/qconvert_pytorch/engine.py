"""Process-wide torch settings the artifacts need, set only inside context managers.

torch's quantized engine (``torch.backends.quantized.engine``) picks the kernels
quantized modules pack their weights for and run with; inductor's ``freezing``
lets it fold int8 weights into oneDNN's packed form, which its int8 lowering needs.
Both are global, so every change here is undone on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

import torch

__all__ = ["cpp_compiler", "inductor_freezing", "quantized_engine"]


@contextlib.contextmanager
def quantized_engine(name: str) -> Iterator[None]:
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = before


@contextlib.contextmanager
def inductor_freezing() -> Iterator[None]:
    import torch._inductor.config as inductor_config

    with inductor_config.patch({"freezing": True}), torch.no_grad():
        yield


def cpp_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend would use, if installed (it reads $CXX, then c++)."""
    return shutil.which(os.environ.get("CXX", "c++"))
