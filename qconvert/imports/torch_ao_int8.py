"""torch.ao eager ``convert``ed int8 models (``torch.ao.nn.quantized`` modules, where torch still has them).

Read: ``Quantize`` stubs' scale/zero point/dtype, quantized Conv/ConvReLU and Linear/LinearReLU
modules' output scale and zero point and their stored int8 weights' (per-channel) scales, and
``QFunctional`` outputs (add, add_relu, mul, cat). The grids are those of the int8 tensors the
model computes: the dtype's full range ([0, 255] for quint8), as its kernels saturate there.
Refused: other quantized modules (embedding bags, recurrent, dynamic) are reported and left out.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.ao.nn import quantized as nnq

from qconvert.imports.source import SourceModel, TapBook
from qconvert.imports.twin import TappedConv, TappedLinear
from qconvert.imports.types import Grid, Tool

__all__ = ["TOOL", "detect", "open_source"]

TOOL: Tool = "torch.ao"
_RANGES = {torch.quint8: (0, 255), torch.qint8: (-128, 127), torch.qint32: (-(2**31), 2**31 - 1)}


def detect(model: nn.Module) -> bool:
    return any(isinstance(m, (nnq.Quantize, nnq.Conv1d, nnq.Conv2d, nnq.Conv3d, nnq.Linear)) for m in model.modules())


def _act_grid(scale: object, zero_point: object, dtype: torch.dtype) -> Grid:
    qmin, qmax = _RANGES[dtype]
    return Grid((float(torch.as_tensor(scale).reshape(-1)[0]),), (int(torch.as_tensor(zero_point).reshape(-1)[0]),), qmin, qmax)


def _weight(w: torch.Tensor) -> tuple[torch.Tensor, Grid]:
    qmin, qmax = _RANGES[w.dtype]
    if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        grid = Grid(tuple(w.q_per_channel_scales().tolist()), tuple(int(z) for z in w.q_per_channel_zero_points().tolist()),
                    qmin, qmax, int(w.q_per_channel_axis()))
    else:
        grid = Grid((float(w.q_scale()),), (int(w.q_zero_point()),), qmin, qmax)
    return w.dequantize(), grid


class TappedFunctional(nn.Module):
    """``QFunctional`` in float: the op, then a tap for its output grid."""

    def __init__(self, otap: nn.Module) -> None:
        super().__init__()
        self.otap = otap

    def add(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.otap(x + y)

    def add_relu(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.otap(torch.relu(x + y))

    def mul(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.otap(x * y)

    def cat(self, xs: list[torch.Tensor], dim: int = 0) -> torch.Tensor:
        return self.otap(torch.cat(xs, dim=dim))


def open_source(model: nn.Module) -> SourceModel:
    reference = model.eval()
    twin = copy.deepcopy(reference)
    book = TapBook(TOOL)
    replaced: list[str] = []
    for name, m in list(twin.named_modules()):
        if any(name.startswith(r + ".") for r in replaced):  # a part of a layer already replaced (packed params)
            continue
        new = _twin_of(name, m, book)
        if new is not None:
            replaced.append(name)
            parent, _, child = name.rpartition(".")
            setattr(twin.get_submodule(parent) if parent else twin, child, new)
        elif name and _is_quantized(m):
            book.notes.append(f"{name}: {type(m).__name__} is not imported")
    return SourceModel(TOOL, reference, twin.eval(), book.records(), tuple(book.notes))


def _is_quantized(m: nn.Module) -> bool:
    return type(m).__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")) and not isinstance(m, nnq.DeQuantize)


def _twin_of(name: str, m: nn.Module, book: TapBook) -> nn.Module | None:
    if isinstance(m, nnq.Quantize):
        return book.tap(_act_grid(m.scale, m.zero_point, m.dtype), name, "activation")
    if isinstance(m, nnq.DeQuantize):
        return nn.Identity()
    if isinstance(m, nnq.QFunctional):
        return TappedFunctional(book.tap(_act_grid(m.scale, m.zero_point, torch.quint8), name, "activation") or nn.Identity())
    relu = "ReLU" in type(m).__name__
    if isinstance(m, (nnq.Conv1d, nnq.Conv2d, nnq.Conv3d, nnq.Linear)):
        w, wgrid = _weight(m.weight())
        b = m.bias()
        wtap = book.tap(wgrid, f"{name}.weight", "weight")
        otap = book.tap(_act_grid(m.scale, m.zero_point, torch.quint8), name, "activation")
        if isinstance(m, nnq.Linear):
            return TappedLinear(w, b, relu, wtap, otap)
        return TappedConv(m, w, b, relu, wtap, otap)
    return None
