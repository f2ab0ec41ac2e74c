"""qconvert: one recipe, one calibration, int8 artifacts for every runtime, each verified.

The Python API (``qconvert.build``, ``calibrate``, ``sensitivity``, ``verify``; see
``qconvert.api``) is loaded on first use, so ``import qconvert`` and ``qconvert --help``
import no torch, and ``qconvert.verify`` never does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from qconvert.version import __version__

_LAZY = {
    "build": "qconvert.api",
    "calibrate": "qconvert.api",
    "sensitivity": "qconvert.sensitivity",
    # subpackages that are callable: qconvert.verify(dir) is qconvert.api.verify (see qconvert.callable_package)
    "verify": "qconvert.verify",
    "Batches": "qconvert.io.batches",
    "Arrays": "qconvert.io.batches",
    "BuildReport": "qconvert.results",
    "TargetReport": "qconvert.results",
    "GateVerdict": "qconvert.results",
    "Calibration": "qconvert.results",
    "Recipe": "qconvert.recipe.model",
    "GateFailedError": "qconvert.errors",
    "BadInputError": "qconvert.errors",
    "QConvertError": "qconvert.errors",
}

__all__ = [
    "Arrays",
    "BadInputError",
    "Batches",
    "BuildReport",
    "Calibration",
    "GateFailedError",
    "GateVerdict",
    "QConvertError",
    "Recipe",
    "TargetReport",
    "__version__",
    "build",
    "calibrate",
    "sensitivity",
    "verify",
]

if TYPE_CHECKING:
    from qconvert import sensitivity, verify
    from qconvert.api import build, calibrate
    from qconvert.errors import BadInputError, GateFailedError, QConvertError
    from qconvert.io.batches import Arrays, Batches
    from qconvert.recipe.model import Recipe
    from qconvert.results import BuildReport, Calibration, GateVerdict, TargetReport


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qconvert' has no attribute '{name}'")
    imported = importlib.import_module(module)
    value = imported if module == f"qconvert.{name}" else getattr(imported, name)
    globals()[name] = value
    return value
