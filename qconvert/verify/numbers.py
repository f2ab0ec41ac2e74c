"""The one place that writes numbers: text cells for people, and special floats for strict JSON.

Strict JSON has no infinity or NaN. An exact artifact's SQNR is +inf, so report.json and
manifest.json write the strings ``"inf"``, ``"-inf"`` and ``"nan"``, and read them back as
floats. Text (terminal, markdown, html) shows ``-`` for a missing figure, ``inf``/``-inf``/``nan``
for special ones, and everything else with the caller's format spec. numpy only at most: this
module is imported by ``qconvert verify`` on boards without torch.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

__all__ = ["JsonFloat", "cell", "from_json_float", "nan_to_none", "to_json_float"]

_SPECIAL = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def to_json_float(v: float) -> float | str:
    """``v`` as strict JSON holds it: finite floats as numbers, inf/-inf/nan as the strings "inf", "-inf", "nan"."""
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def from_json_float(v: object) -> object:
    """The inverse of ``to_json_float`` (other values pass through to the float validator)."""
    return _SPECIAL[v] if isinstance(v, str) and v in _SPECIAL else v


def nan_to_none(v: float | None) -> float | None:
    """A metric the data cannot tell (NaN) as None: reports write it as null."""
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def cell(v: object, spec: str = ".2f", unit: str = "") -> str:
    """A figure for people: ``-`` when missing, ``inf``/``-inf``/``nan`` when special, else ``format(v, spec)`` + ``unit``."""
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return format(v, spec) + unit


#: A float field of report.json and manifest.json: a float in Python (inf and nan included), a number or
#: "inf"/"-inf"/"nan" in JSON.
JsonFloat = Annotated[
    float,
    BeforeValidator(from_json_float),
    PlainSerializer(to_json_float, return_type=float | str, when_used="json"),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"enum": ["inf", "-inf", "nan"], "type": "string"}]}),
]
