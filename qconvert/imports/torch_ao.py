"""torch.ao eager and FX QAT: models after ``prepare_qat`` / ``prepare_qat_fx``.

Read: every enabled ``FakeQuantizeBase`` (FakeQuantize, FusedMovingAvgObsFakeQuantize, the
learnable and fixed-qparams ones): its ``scale``, ``zero_point``, ``quant_min``/``quant_max``
(reduced ranges included) and per-channel axis. Fused QAT modules (ConvBn, ConvBnReLU,
ConvReLU, LinearReLU) become plain convolutions with BatchNorm folded the way their eval
forward folds it, so the weight grid applies to the same folded weight.
Refused: a disabled fake quantizer is treated as absent (that tensor has no grid).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.ao.nn import intrinsic as nni
from torch.ao.nn.intrinsic import qat as nniqat
from torch.ao.quantization.fake_quantize import FakeQuantizeBase
from torch.nn.utils.fusion import fuse_conv_bn_weights

from qconvert.imports.source import SourceModel, TapBook
from qconvert.imports.twin import TappedConv, TappedLinear
from qconvert.imports.types import Grid, Tool

__all__ = ["TOOL", "detect", "grid_of", "open_source"]

TOOL: Tool = "torch.ao"
_CONVS = (nn.modules.conv._ConvNd,)
_LINEARS = (nn.Linear,)


def detect(model: nn.Module) -> bool:
    """A model with an enabled fake quantizer (all disabled: it runs float, and is built as float)."""
    return any(grid_of(m) is not None for m in model.modules() if isinstance(m, FakeQuantizeBase))


def grid_of(module: object) -> Grid | None:
    """The grid of an enabled fake quantizer; None for anything else."""
    if not isinstance(module, FakeQuantizeBase):
        return None
    fq: Any = module  # scale, zero_point, quant_min/max, ch_axis: set by its subclasses, not declared on the base
    enabled = getattr(fq, "fake_quant_enabled", None)
    if enabled is not None and int(enabled.reshape(-1)[0]) == 0:
        return None
    scale = fq.scale.detach().reshape(-1).float().tolist()
    zp = fq.zero_point.detach().reshape(-1).round().long().tolist()
    per_channel = getattr(fq, "is_per_channel", False) or fq.qscheme in (torch.per_channel_affine, torch.per_channel_symmetric)
    return Grid(tuple(scale), tuple(zp), int(fq.quant_min), int(fq.quant_max), int(fq.ch_axis) if per_channel else None)


def open_source(model: nn.Module) -> SourceModel:
    """The tapped float twin of a prepared model, and the prepared model itself (observers
    off, eval mode) as the parity reference."""
    reference = model
    reference.apply(torch.ao.quantization.disable_observer)
    reference.eval()
    twin = copy.deepcopy(reference)
    book = TapBook(TOOL)
    for name, module in list(twin.named_modules()):
        if isinstance(module, _CONVS + _LINEARS) and isinstance(getattr(module, "weight_fake_quant", None), FakeQuantizeBase):
            _replace(twin, name, _float_twin(name, module, book))
    _tap_remaining(twin, book)
    return SourceModel(TOOL, reference, twin.eval(), book.records(), tuple(book.notes))


def _float_twin(name: str, m: Any, book: TapBook) -> nn.Module:  # a torch.ao QAT conv or linear (its attributes are untyped)
    weight, bias = m.weight.detach(), m.bias.detach() if m.bias is not None else None
    bn = getattr(m, "bn", None)
    if bn is not None:
        weight, bias = fuse_conv_bn_weights(weight, bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
    relu = isinstance(m, (nniqat.ConvBnReLU1d, nniqat.ConvBnReLU2d, nniqat.ConvBnReLU3d, nniqat.ConvReLU1d, nniqat.ConvReLU2d,
                          nniqat.ConvReLU3d, nniqat.LinearReLU, nni.ConvReLU2d))
    wtap = book.tap(grid_of(getattr(m, "weight_fake_quant", None)), f"{name}.weight_fake_quant", "weight")
    otap = book.tap(grid_of(getattr(m, "activation_post_process", None)), f"{name}.activation_post_process", "activation")
    if isinstance(m, _LINEARS):
        return TappedLinear(weight, bias, relu, wtap, otap)
    return TappedConv(m, weight, bias, relu, wtap, otap)


def _tap_remaining(model: nn.Module, book: TapBook) -> None:
    """Every other fake quantizer becomes a tap; one shared by several names gets one tap."""
    taps: dict[int, nn.Module] = {}
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent._modules.items()):
            if isinstance(child, FakeQuantizeBase):
                where = f"{parent_name}.{child_name}" if parent_name else child_name
                if id(child) not in taps:
                    taps[id(child)] = book.tap(grid_of(child), where, "activation") or nn.Identity()
                setattr(parent, child_name, taps[id(child)])


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)
