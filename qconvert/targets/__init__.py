"""The public plugin API: everything a target plugin may import from qconvert, and nothing else.

A plugin imports only from ``qconvert.targets`` (``tests/test_import_graph.py`` checks the
in-repo plugins); the modules behind these names may move between releases, these names do
not without a new ``API_VERSION``. The names that need torch (the quantized model, graph
helpers) are loaded on first use, so ``from qconvert.targets import Target`` imports no torch
and ``qconvert verify`` stays torch-free.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from qconvert.core.constraints import QuantConstraints, Violation
from qconvert.core.placement import DEFAULT_PLACEMENT, Placement
from qconvert.core.plan import TensorQuant
from qconvert.errors import BadInputError, ConstraintError, QConvertError, RecipeError, TargetUnavailableError
from qconvert.recipe.model import Mode, Recipe
from qconvert.targets.base import (
    API_VERSION,
    Artifact,
    ArtifactDetails,
    Availability,
    CheckContext,
    DeviceFigures,
    ExtraChecks,
    ExtraResults,
    Latency,
    NoOptions,
    Target,
    TargetOptions,
)
from qconvert.targets.inputs import fit_integer_input
from qconvert.targets.intermediates import Intermediates, RuntimeTensor
from qconvert.targets.speed import FastTypes

if TYPE_CHECKING:
    from qconvert.core.accumulator import signed_bits
    from qconvert.core.binding import call_model
    from qconvert.core.capture import Captured
    from qconvert.core.graph import OpKind, arg_float, arg_int, arg_node, attr_of, module_of, op_kind
    from qconvert.core.quantize import QuantizedModel
    from qconvert.verify.metrics import AccuracyAccumulator, CompareAccumulator
    from qconvert.verify.timing import interleaved_ms

__all__ = [
    "API_VERSION",
    "DEFAULT_PLACEMENT",
    "AccuracyAccumulator",
    "Artifact",
    "ArtifactDetails",
    "Availability",
    "BadInputError",
    "Captured",
    "CheckContext",
    "CompareAccumulator",
    "ConstraintError",
    "DeviceFigures",
    "ExtraChecks",
    "ExtraResults",
    "FastTypes",
    "Intermediates",
    "Latency",
    "Mode",
    "NoOptions",
    "OpKind",
    "Placement",
    "QConvertError",
    "QuantConstraints",
    "QuantizedModel",
    "Recipe",
    "RecipeError",
    "RuntimeTensor",
    "Target",
    "TargetOptions",
    "TargetUnavailableError",
    "TensorQuant",
    "Violation",
    "arg_float",
    "arg_int",
    "arg_node",
    "attr_of",
    "call_model",
    "fit_integer_input",
    "interleaved_ms",
    "module_of",
    "op_kind",
    "signed_bits",
]

#: Loaded on first use: they import torch (or, for the metrics, are needed only to verify).
_LAZY = {
    "QuantizedModel": "qconvert.core.quantize",
    "Captured": "qconvert.core.capture",
    "OpKind": "qconvert.core.graph",
    "arg_float": "qconvert.core.graph",
    "arg_int": "qconvert.core.graph",
    "arg_node": "qconvert.core.graph",
    "attr_of": "qconvert.core.graph",
    "module_of": "qconvert.core.graph",
    "op_kind": "qconvert.core.graph",
    "signed_bits": "qconvert.core.accumulator",
    "call_model": "qconvert.core.binding",
    "AccuracyAccumulator": "qconvert.verify.metrics",
    "CompareAccumulator": "qconvert.verify.metrics",
    "interleaved_ms": "qconvert.verify.timing",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qconvert.targets' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
