"""Weights that a parametrization computes at every forward, baked into plain parameters.

``weight_norm`` (Wav2Vec2's positional conv), spectral norm and any
``torch.nn.utils.parametrize`` parametrization make a layer's weight the output of a
small computation instead of a parameter. In the captured graph such a weight is not a
constant, so it could not be quantized as one. Quantization wants the weight the model
computes in eval mode; baking it into a parameter of a copy gives exactly that and leaves
the caller's model as it was. Shared (tied) parameters stay shared in the copy.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any, cast

import torch
from torch.nn.utils import parametrize

__all__ = ["baked", "is_parametrized"]


def _legacy_hooks(module: torch.nn.Module) -> list[tuple[str, str]]:
    """(kind, parameter name) for each hook-based ``weight_norm`` / ``spectral_norm`` on ``module``."""
    found: list[tuple[str, str]] = []
    for hook in module._forward_pre_hooks.values():
        kind = type(hook).__name__
        if kind in ("WeightNorm", "SpectralNorm"):
            found.append((kind, cast(Any, hook).name))  # a torch WeightNorm/SpectralNorm object, typed as a plain callable
    return found


def is_parametrized(model: torch.nn.Module) -> bool:
    """Whether any sub-module's weight is computed by a parametrization or a legacy norm hook."""
    return any(parametrize.is_parametrized(m) or _legacy_hooks(m) for m in model.modules())


def _unparametrize(m: torch.nn.Module) -> None:
    """Turn a parametrized copy back into its plain class, holding the computed values.

    Not ``remove_parametrizations``: a deep copy shares the dynamically made parametrized
    class with the original, and that function edits the class, which would break the
    caller's model.
    """
    parametrizations = cast(torch.nn.ModuleDict, m.parametrizations)  # added by torch.nn.utils.parametrize
    values = {name: getattr(m, name).detach().clone() for name in parametrizations}
    # ``original`` (or ``original0``, ``original1`` ...) is a Parameter exactly when the weight was one
    was_param = {name: bool(p._parameters) for name, p in parametrizations.items()}
    del m._modules["parametrizations"]
    m.__class__ = type(m).__bases__[0]
    for name, value in values.items():
        if was_param[name]:
            m.register_parameter(name, torch.nn.Parameter(value))
        else:
            m.register_buffer(name, value)


@contextlib.contextmanager
def baked(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model`` itself when nothing is parametrized, else a copy whose parametrized weights are plain
    parameters holding the values the model computes now (call it in eval mode)."""
    if not is_parametrized(model):
        yield model
        return
    # A legacy norm hook leaves its last computed weight on the module as a non-leaf tensor,
    # which deepcopy refuses: copy a detached clone of it (the hook is removed right after).
    memo: dict[int, object] = {}
    for m in model.modules():
        for _, name in _legacy_hooks(m):
            w = getattr(m, name, None)
            if isinstance(w, torch.Tensor) and not w.is_leaf:
                memo[id(w)] = w.detach().clone()
    plain = copy.deepcopy(model, memo)
    with torch.no_grad():
        for m in plain.modules():
            if parametrize.is_parametrized(m):
                _unparametrize(m)
            for kind, name in _legacy_hooks(m):
                if kind == "WeightNorm":
                    torch.nn.utils.remove_weight_norm(m, name)
                else:
                    torch.nn.utils.remove_spectral_norm(m, name)
    yield plain
