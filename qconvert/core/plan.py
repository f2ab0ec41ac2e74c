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
    #: A range known from the network, used as is (ReLU6 outputs: [0, 6]).
    fixed_range: tuple[float, float] | None = None
    #: Bounds the chosen range never exceeds (tanh inputs [-4, 4], sigmoid inputs [-6, 6]).
    clamp: tuple[float, float] | None = None
    #: The weight of a depthwise convolution (groups == input channels > 1).
    depthwise: bool = False
    #: Set by a target's constraints (TIDL): a ``sym`` activation whose chosen range has no
    #: negative values uses the unsigned range [0, 2**bits - 1] with zero point 0.
    unsigned_if_nonnegative: bool = False
    #: Weights: codes in the narrow range [-(2**(bits-1) - 1), 2**(bits-1) - 1] (TensorRT, TFLite); False: the
    #: full signed range, as torch.ao and PT2E weights train (recipe ``narrow_weights``).
    narrow: bool = True
    #: Quantized per batch at run time (recipe ``dynamic``): no calibrated range; ``scheme`` gives
    #: the unsigned integer range the runtime's dynamic kernel uses.
    dynamic: bool = False

    @property
    def per_channel(self) -> bool:
        return self.role == "weight" and self.scheme.granularity == "per_channel"
