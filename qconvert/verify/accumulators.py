"""The accumulator-width check of a build: widest partial sums per layer vs recipe ``accumulator_bits``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch

from qconvert.core.accumulator import widest_accumulators
from qconvert.core.policy import QuantPolicy
from qconvert.core.quantize import QuantizedModel
from qconvert.verify.report_schema import AccumulatorLayer, AccumulatorsEntry

__all__ = ["accumulator_entry", "wants_accumulator_check"]


def wants_accumulator_check(qmodel: QuantizedModel) -> bool:
    """Whether the recipe sets ``accumulator_bits`` globally or for any layer."""
    r = qmodel.recipe
    return r.accumulator_bits is not None or any(o.accumulator_bits is not None for o in r.overrides)


def accumulator_entry(qmodel: QuantizedModel, batches: Iterable[tuple[torch.Tensor, ...]],
                      data: Literal["calibration", "evaluation"]) -> AccumulatorsEntry:
    """The report section: every quantized conv/linear layer's widest accumulator on ``batches``,
    and the layers whose widest partial sum needs more bits than their limit."""
    policy = QuantPolicy(qmodel.recipe)
    widths = widest_accumulators(qmodel.graph, batches, policy.accumulator_bits)
    return AccumulatorsEntry(data=data, layers=[AccumulatorLayer.model_validate(w, from_attributes=True) for w in widths],
                             overflowing=[w.layer for w in widths if w.overflows])
