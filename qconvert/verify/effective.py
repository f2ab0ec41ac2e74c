"""What was actually built: the schemes every tensor got, and the hashes that identify the recipe.

A recipe says what it wants; a target's ``optimize_for`` and its constraints decide what
each tensor gets (TensorRT makes every activation ``sym`` even where the recipe asks for
``asym_u``). Reports and manifests describe the result, so they read it from the quantized
model's per-tensor decisions, not from the recipe. Two hashes tie a build to its recipe:
the recipe file's bytes (what is committed) and the effective per-target recipe (what was
quantized with, after ``optimize_for``), so the manifest and the report agree on both.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qconvert.core.quantize import QuantizedModel

__all__ = ["EffectiveSchemes", "effective_schemes", "file_sha256"]


@dataclass(frozen=True)
class EffectiveSchemes:
    """The schemes the quantized tensors got: 'sym', or 'asym_u (3 tensors), sym (40 tensors)' where they differ."""

    activations: str
    weights: str


def _describe(labels: Sequence[str]) -> str:
    if not labels:
        return "none quantized"
    counts = Counter(labels).most_common()
    if len(counts) == 1:
        return counts[0][0]
    return ", ".join(f"{label} ({n} tensors)" for label, n in counts)


def effective_schemes(qmodel: QuantizedModel) -> EffectiveSchemes:
    """Activation modes and weight mode+granularity over every quantized tensor (dynamic ones excluded)."""
    acts = [tq.scheme.mode for tq in qmodel.decisions.values() if tq.role == "activation" and not tq.dynamic]
    weights = [f"{tq.scheme.mode} {tq.scheme.granularity}" for tq in qmodel.decisions.values() if tq.role == "weight"]
    return EffectiveSchemes(_describe(acts), _describe(weights))


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (the recipe as committed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
