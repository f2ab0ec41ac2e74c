"""NVIDIA ModelOpt (``mtq.quantize``) and pytorch-quantization state dicts.

Read: every enabled integer ``TensorQuantizer``: ``amax`` (per tensor, or per channel along
``axis``), ``num_bits``, ``unsigned``, ``narrow_range``; its grid is ``scale = amax / bound``
with ``bound = 2**(bits - 1 + unsigned) - 1`` and codes ``[-bound (-1 unless narrow), bound]``
(``[0, bound]`` unsigned), zero point 0. A weight quantized before a BatchNorm gets the folded
per-channel grid (scale times |gamma / std|: the same codes). State dicts saved by
pytorch-quantization (``_input_quantizer._amax``, ``_weight_quantizer._amax``) load into the
ModelOpt model under today's names.
Refused: quantizers without an amax (never calibrated), block-wise (``block_sizes``) and
floating-point (FP8/FP4) formats: their tensors are left without a grid and reported.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from qconvert.imports.source import SourceModel, TapBook
from qconvert.imports.types import Grid, Tool

__all__ = ["TOOL", "detect", "grid_of", "open_source", "rename_state"]

TOOL: Tool = "ModelOpt"
_LEGACY = {"._input_quantizer.": ".input_quantizer.", "._weight_quantizer.": ".weight_quantizer.",
           "._output_quantizer.": ".output_quantizer."}


def _is_quantizer(m: nn.Module) -> bool:
    return type(m).__name__ == "TensorQuantizer" and type(m).__module__.startswith("modelopt.")


def detect(model: nn.Module) -> bool:
    return any(_is_quantizer(m) for m in model.modules())


def rename_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """pytorch-quantization's buffer names (``conv._input_quantizer._amax``) as ModelOpt's."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for old, new in _LEGACY.items():
            key = key.replace(old, new)
        out[key] = value
    return out


def grid_of(q: nn.Module) -> tuple[Grid | None, str]:
    """The grid of an enabled integer quantizer, or None and why not."""
    if not getattr(q, "is_enabled", False):
        return None, "disabled"
    bits = getattr(q, "num_bits", 8)
    if not isinstance(bits, int) or getattr(q, "block_sizes", None):
        return None, f"not an integer per-tensor/per-channel format (num_bits={bits}, block_sizes={getattr(q, 'block_sizes', None)})"
    amax = getattr(q, "_amax", None)
    if amax is None:
        return None, "no amax (never calibrated)"
    unsigned = bool(getattr(q, "unsigned", False))
    bound = 2 ** (bits - 1 + int(unsigned)) - 1
    qmin = 0 if unsigned else -bound - (0 if getattr(q, "narrow_range", False) else 1)
    a = amax.detach().float().reshape(-1)
    scale = tuple(float(v) / bound for v in a.tolist())
    axis: Any = getattr(q, "axis", None)  # ModelOpt's TensorQuantizer: an int, a 1-tuple, or None
    axis = axis[0] if isinstance(axis, (tuple, list)) and len(axis) == 1 else axis
    ch_axis = int(axis) if axis is not None and a.numel() > 1 else None
    return Grid(scale, (0,) * len(scale), qmin, bound, ch_axis), ""


def open_source(model: nn.Module) -> SourceModel:
    reference = model.eval()
    twin = copy.deepcopy(reference)
    book = TapBook(TOOL)
    for parent_name, parent in list(twin.named_modules()):
        for name, child in list(parent._modules.items()):
            if child is None or not _is_quantizer(child):
                continue
            where = f"{parent_name}.{name}" if parent_name else name
            grid, why = grid_of(child)
            if grid is None and why != "disabled":
                book.notes.append(f"{where}: {why}; not imported")
            role = "weight" if name.startswith("weight") else "activation"
            setattr(parent, name, book.tap(grid, where, role) or nn.Identity())  # type: ignore[arg-type]  # role: one of the two literals above
    return SourceModel(TOOL, reference, twin.eval(), book.records(), tuple(book.notes))
