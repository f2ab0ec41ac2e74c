"""What a target returns when it exposes its runtime's quantized intermediate tensors.

Per-layer parity (``qconvert.verify.layer_parity``) compares each quantized tensor the
runtime computed with the simulation of that layer fed the runtime's own inputs, so
rounding differences between integer kernels and float fake-quant cannot compound with
depth. A target opts in with ``Target.run_with_intermediates``; the others are checked
end to end only. numpy only: no torch, like ``Target.run``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Intermediates", "RuntimeTensor"]


@dataclass(frozen=True)
class RuntimeTensor:
    """One quantized activation as the runtime holds it: integers on the artifact's own grid.

    ``scale`` and ``zero_point`` are read from the artifact, so a scale that differs from
    the simulation's (a corrupted or mis-exported one) shows.
    """

    name: str
    values: np.ndarray
    scale: float
    zero_point: int


@dataclass(frozen=True)
class Intermediates:
    """One run with the artifact's quantized tensors exposed.

    ``tensors`` is keyed by the simulation's quantize node name (``QuantizedModel.graph``).
    ``missing`` names the quantize nodes the artifact was emitted with but no longer has
    (a dropped Q/DQ pair); a quantize node in neither is one this runtime does not expose
    (fused away), which is not an error.
    """

    outputs: list[np.ndarray]
    tensors: Mapping[str, RuntimeTensor]
    missing: tuple[str, ...] = field(default=())
