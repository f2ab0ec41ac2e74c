"""Brevitas: QuantConv/QuantLinear/QuantReLU/QuantIdentity models with their learned scales.

Read: each enabled weight, input, output and activation quantizer's ``scale()``, ``zero_point()``,
``bit_width()``, signedness and narrow range, per tensor or per output channel; power-of-two
(fixed-point) scales come through as they are, which is what TIDL runs. A weight quantized before
an unfused BatchNorm gets the folded per-channel grid.
Refused: other Brevitas layers (quantized pooling, recurrent, attention, ...) and non-integer or
group-wise formats: their quantizers are reported and left out (those tensors get no grid).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from qconvert.imports.source import SourceModel, TapBook
from qconvert.imports.twin import TappedAct, TappedConv, TappedLinear
from qconvert.imports.types import Grid, Tool

__all__ = ["TOOL", "detect", "grid_of", "open_source"]

TOOL: Tool = "Brevitas"


def detect(model: nn.Module) -> bool:
    return any(type(m).__module__.startswith("brevitas.nn") for m in model.modules())


def grid_of(proxy: Any, weight: bool = False) -> Grid | None:
    """The grid of an enabled Brevitas quant proxy, None when disabled or absent."""
    if proxy is None or not getattr(proxy, "is_quant_enabled", False):
        return None
    if getattr(proxy, "is_groupwise", False):
        return None
    with torch.no_grad():
        scale = proxy.scale().detach().double().reshape(-1)
        zp = proxy.zero_point().detach().reshape(-1)
        bits = int(proxy.bit_width())
    signed, narrow = bool(proxy.is_signed), bool(proxy.is_narrow_range)
    if signed:
        qmin, qmax = -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1
    else:
        qmin, qmax = 0, 2**bits - 1 - int(narrow)
    if zp.numel() == 1 and scale.numel() > 1:
        zp = zp.expand(scale.numel())
    per_channel = scale.numel() > 1
    return Grid(tuple(scale.tolist()), tuple(int(v) for v in zp.round().tolist()), qmin, qmax, 0 if per_channel else None)


def open_source(model: nn.Module) -> SourceModel:
    import brevitas.nn as qnn

    reference = model.eval()
    twin = copy.deepcopy(reference)
    book = TapBook(TOOL)
    for name, m in list(twin.named_modules()):
        new = _twin_of(name, m, qnn, book)
        if new is not None:
            parent, _, child = name.rpartition(".")
            setattr(twin.get_submodule(parent) if parent else twin, child, new)
        elif type(m).__module__.startswith("brevitas.nn") and name and _is_layer(m):
            book.notes.append(f"{name}: {type(m).__name__} is not imported (conv, linear, ReLU and identity layers are)")
    return SourceModel(TOOL, reference, twin.eval(), book.records(), tuple(book.notes))


def _is_layer(m: nn.Module) -> bool:
    return any(hasattr(m, a) for a in ("act_quant", "weight_quant", "input_quant"))


def _io_taps(name: str, m: nn.Module, book: TapBook) -> tuple[nn.Module | None, nn.Module | None]:
    itap = book.tap(grid_of(getattr(m, "input_quant", None)), f"{name}.input_quant", "activation")
    otap = book.tap(grid_of(getattr(m, "output_quant", None)), f"{name}.output_quant", "activation")
    return itap, otap


def _twin_of(name: str, m: nn.Module, qnn: object, book: TapBook) -> nn.Module | None:
    convs = (qnn.QuantConv1d, qnn.QuantConv2d, qnn.QuantConv3d)  # type: ignore[attr-defined]  # qnn: brevitas.nn, passed in
    if isinstance(m, (*convs, qnn.QuantLinear)):  # type: ignore[attr-defined]  # as above
        itap, otap = _io_taps(name, m, book)
        wtap = book.tap(grid_of(m.weight_quant, weight=True), f"{name}.weight_quant", "weight")
        bias = m.bias.detach() if m.bias is not None else None
        if isinstance(m, qnn.QuantLinear):  # type: ignore[attr-defined]  # as above
            return TappedLinear(m.weight.detach(), bias, False, wtap, otap, itap)
        return TappedConv(m, m.weight.detach(), bias, False, wtap, otap, itap)
    acts = {qnn.QuantReLU: nn.ReLU, qnn.QuantIdentity: nn.Identity}  # type: ignore[attr-defined]  # as above
    for cls, plain in acts.items():
        if type(m) is cls:
            itap, _ = _io_taps(name, m, book)
            otap = book.tap(grid_of(getattr(m, "act_quant", None)), f"{name}.act_quant", "activation")
            return TappedAct(plain(), itap, otap)
    return None
