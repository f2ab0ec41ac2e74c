"""torch.onnx's operator registry built once per process instead of once per export.

``torch.onnx.export(dynamo=True)`` rebuilds its registry of ONNX implementations of ATen ops
(``ONNXRegistry.from_torchlib``: about 1,000 onnxscript functions, each with an inferred signature)
on every call: 0.7-0.9 s per export here, more than exporting the digits sample itself. ``shared_registry``
keeps the first one built for an opset and hands each export its own copy of the table (the exporter
adds a call's ``custom_translation_table`` to the copy), while ``torch.onnx.export`` runs; the entries
themselves are not changed by an export. Each worker process of a build (``--jobs``) builds its own
once, on its first export.

Where torch moves the registry (``_registration.ONNXRegistry.from_torchlib``), nothing is patched
and every export builds its own, as torch does.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["shared_registry"]

_BUILT: dict[int, Any] = {}


def _registration() -> Any:
    try:
        from torch.onnx._internal.exporter import _constants, _registration
    except ImportError:
        return None
    if not isinstance(getattr(_registration.ONNXRegistry, "__dict__", {}).get("from_torchlib"), classmethod):
        return None
    return _registration, _constants


def _copy(registry: Any) -> Any:
    out = copy.copy(registry)
    out.functions = {k: list(v) for k, v in registry.functions.items()}
    return out


@contextmanager
def shared_registry() -> Iterator[None]:
    """Inside the block ``ONNXRegistry.from_torchlib`` returns a copy of the registry built the first time."""
    found = _registration()
    if found is None:
        yield
        return
    registration, constants = found
    cls = registration.ONNXRegistry
    original = cls.__dict__["from_torchlib"]

    def from_torchlib(klass: Any, opset_version: int = constants.TORCHLIB_OPSET) -> Any:
        if klass is not cls:
            return original.__func__(klass, opset_version)
        if opset_version not in _BUILT:
            _BUILT[opset_version] = original.__func__(klass, opset_version)
        return _copy(_BUILT[opset_version])

    cls.from_torchlib = classmethod(from_torchlib)
    try:
        yield
    finally:
        cls.from_torchlib = original

