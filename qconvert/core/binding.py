"""How the float model is called with named inputs: one rule for every call site.

Data carries names (a ``.npz``'s keys, a dict batch's keys); ``qconvert.io.inputs`` picks the
forward parameters they feed, in forward order. ``bind_inputs`` turns those names and their
tensors into the call: the leading names that are the first positional parameters, in order,
are passed positionally; the rest by keyword (a parameter after a skipped optional one, a
keyword-only parameter). Capture, calibration, verification and sensitivity all call the
model through it, so every pass binds each array to the same parameter. Names that are no
parameter of forward (a signature that cannot be read, ``*args``) keep today's rule: all
positional, in data order.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch

__all__ = ["bind_inputs", "call_model"]


def bind_inputs(model: torch.nn.Module, names: Sequence[str],
                tensors: Sequence[torch.Tensor]) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
    """``(args, kwargs)`` that call ``model`` with each tensor bound to the parameter of its name."""
    tensors = tuple(tensors)
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return tensors, {}
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    by_keyword = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    lead = 0
    while lead < min(len(names), len(positional), len(tensors)) and names[lead] == positional[lead]:
        lead += 1
    rest = list(names[lead:len(tensors)])
    if len(names) != len(tensors) or not all(n in by_keyword for n in rest):
        return tensors, {}
    return tensors[:lead], dict(zip(rest, tensors[lead:]))


def call_model(model: torch.nn.Module, names: Sequence[str], tensors: Sequence[torch.Tensor]) -> object:
    """``model`` run on ``tensors``, bound by ``bind_inputs``."""
    args, kwargs = bind_inputs(model, names, tensors)
    return model(*args, **kwargs)
