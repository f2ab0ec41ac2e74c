"""Resolved per-tensor quantization decisions, shared by calibration and conversion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from qconvert.recipe.model import QScheme, RangeMethod

__all__ = ["Role", "TensorQuant"]

Role = Literal["activation", "weight"]


@dataclass(frozen=True)
class TensorQuant:
    """How one tensor of the captured graph is quantized.

    ``key`` names the tensor in stats files and reports: the producing node's
    name for activations, the parameter's node name for weights.
    """

    key: str
    role: Role
    module: str
    scheme: QScheme
    method: RangeMethod = "minmax"
    ch_axis: int | None = None

    @property
    def per_channel(self) -> bool:
        return self.role == "weight" and self.scheme.granularity == "per_channel"
