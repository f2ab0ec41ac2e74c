"""What an importer reads from a quantized or QAT-prepared model, as typed objects.

Every tool describes a quantizer by a grid: a scale (per tensor or per channel), a zero
point and the integer interval [qmin, qmax] the tool rounds into. ``ImportedQuant`` holds
one grid per tensor, keyed the way the build's statistics and weight ranges are keyed
(an activation by its producing node's name, a weight by ``<module>.weight``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from qconvert.core.plan import Role
from qconvert.recipe.model import QScheme

__all__ = ["Grid", "ImportedQuant", "ImportedTensor", "Tool"]

Tool = Literal["torch.ao", "torchao PT2E", "ModelOpt", "pytorch-quantization", "Brevitas"]


@dataclass(frozen=True)
class Grid:
    """A quantizer's grid: value = (code - zero_point) * scale, code in [qmin, qmax].

    ``scale`` and ``zero_point`` have one entry per tensor or one per channel along ``ch_axis``.
    """

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    qmin: int
    qmax: int
    ch_axis: int | None = None

    def __post_init__(self) -> None:
        if len(self.scale) != len(self.zero_point) or not self.scale:
            raise ValueError(f"a grid needs as many zero points as scales, got {len(self.scale)} and {len(self.zero_point)}")

    @property
    def per_channel(self) -> bool:
        return self.ch_axis is not None

    @property
    def symmetric(self) -> bool:
        return all(z == 0 for z in self.zero_point) and self.qmin < 0

    @property
    def bits(self) -> int:
        return max(1, (self.qmax - self.qmin).bit_length())

    @property
    def power_of_two(self) -> bool:
        return all(s > 0 and float(s).hex().startswith("0x1.0000000000000p") for s in self.scale)

    def scheme(self) -> QScheme:
        """The recipe scheme this grid is an instance of."""
        if self.qmin >= 0:
            mode = "asym_u"
        elif self.symmetric:
            mode = "sym"
        else:
            mode = "asym_s"
        return QScheme(bits=self.bits, mode=mode, granularity="per_channel" if self.per_channel else "per_tensor",
                       power_of_two=self.power_of_two)


@dataclass(frozen=True)
class ImportedTensor:
    """One quantizer of the source model, placed on a tensor of the captured graph."""

    key: str
    role: Role
    #: The module of the captured graph the tensor belongs to (for messages and overrides).
    module: str
    grid: Grid
    #: Where the quantizer lives in the source model, e.g. ``conv1.weight_fake_quant``.
    source: str


@dataclass(frozen=True)
class ImportedQuant:
    """Everything an importer read: the tool, one grid per quantized tensor, and notes
    on what it read and what it left out (shown in the report)."""

    tool: Tool
    tensors: tuple[ImportedTensor, ...]
    notes: tuple[str, ...] = field(default=())

    def activations(self) -> dict[str, ImportedTensor]:
        return {t.key: t for t in self.tensors if t.role == "activation"}

    def weights(self) -> dict[str, ImportedTensor]:
        return {t.key: t for t in self.tensors if t.role == "weight"}
