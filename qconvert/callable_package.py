"""``qconvert.verify(...)`` and ``qconvert.sensitivity(...)`` are API functions and also subpackages.

Importing a subpackage sets the parent's attribute of that name to the module, so the two cannot
simply share the name: the subpackage itself is made callable, forwarding to ``qconvert.api``.
Imports nothing heavy: ``qconvert.verify`` must stay torch-free.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__all__ = ["make_callable"]


def make_callable(package: str, function: str) -> None:
    """Calling the module ``package`` calls ``qconvert.api.<function>``."""

    class _CallablePackage(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(importlib.import_module("qconvert.api"), function)(*args, **kwargs)

    sys.modules[package].__class__ = _CallablePackage
