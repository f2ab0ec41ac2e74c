"""Model outputs as one flat tuple of tensors, each named by its path in the output structure.

Real models return tuples, lists, dicts, dataclasses and Hugging Face ``ModelOutput``s,
with tensors nested inside. Every tensor in there is an output to verify, so the build
works on the flat tuple and names each tensor by its path (``logits``,
``hidden_states.2``). The order is torch's pytree order, the one ``torch.export``
flattens outputs in, so the float model's outputs line up with the captured graph's.
Non-tensor leaves (``None``, Python numbers) are not outputs.

A dataclass the model returns need not be registered with pytree: it is registered
for the duration of a capture only (``dataclasses_registered``), and ``flatten``
walks dataclasses itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.utils._pytree as pytree

__all__ = ["SINGLE_OUTPUT", "dataclasses_registered", "flatten", "output_names"]

#: The name of a model's only output when it returns a bare tensor.
SINGLE_OUTPUT = "output"


def _walk(obj: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, Mapping):  # dict, OrderedDict, ModelOutput (its non-None fields, in order)
        for k, v in obj.items():
            yield from _walk(v, (*path, str(k)))
    elif isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        for k, v in zip(obj._fields, obj):
            yield from _walk(v, (*path, k))
    elif isinstance(obj, (tuple, list)):
        for i, v in enumerate(obj):
            yield from _walk(v, (*path, str(i)))
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _walk(getattr(obj, f.name), (*path, f.name))


def flatten(out: Any) -> tuple[torch.Tensor, ...]:
    """The tensors of a model's output, in pytree order."""
    return tuple(t for _, t in _walk(out, ()))


def output_names(out: Any) -> tuple[str, ...]:
    """One name per tensor of ``flatten(out)``: its path joined with dots, ``output`` for a bare tensor.

    Names are safe as file names and ONNX value names (``output_<name>.npy`` golden files).
    """
    paths = [p for p, _ in _walk(out, ())]
    names = [".".join(p) if p else SINGLE_OUTPUT for p in paths]
    return tuple(re.sub(r"[^A-Za-z0-9_.\-]", "_", n) for n in names)


@contextlib.contextmanager
def dataclasses_registered(out: Any) -> Iterator[None]:
    """Register, for the ``with`` block only, every dataclass type in ``out`` that pytree does not know,
    so ``torch.export`` can flatten a model that returns one. Process-wide state is restored on exit."""
    added: list[type] = []
    try:
        for t in _dataclass_types(out):
            if t not in pytree.SUPPORTED_NODES:
                pytree.register_dataclass(t)
                added.append(t)
        yield
    finally:
        for t in reversed(added):
            pytree._deregister_pytree_node(t)


def _dataclass_types(obj: Any) -> list[type]:
    found: list[type] = []
    if isinstance(obj, Mapping):
        children: list[Any] = list(obj.values())
    elif isinstance(obj, (tuple, list)):
        children = list(obj)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        found.append(type(obj))
        children = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    else:
        return found
    for c in children:
        found += [t for t in _dataclass_types(c) if t not in found]
    return found
