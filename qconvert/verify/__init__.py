"""Verification: metrics, gates, reports, per-layer figures and the torch-free on-device check.

The package is callable: ``qconvert.verify(artifact_dir)`` is ``qconvert.api.verify`` (a
subpackage and an API function cannot otherwise share the name ``qconvert.verify``).
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from qconvert.api import verify

        return verify(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
