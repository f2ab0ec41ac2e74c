"""Which forward parameters a data file feeds, and in what order.

A model with several inputs (a transformer's ``input_ids`` and ``attention_mask``)
reads a ``.npz`` with one array per input, keyed by the forward parameter's name.
The names used are the forward parameters (positional or keyword-only) the file
provides, in forward order; ``qconvert.core.binding`` passes the leading ones that are
forward's first positional parameters positionally and the rest by keyword, so a file
may skip optional parameters (``pixel_values=None`` before ``input_ids``) and feed
keyword-only ones. A required parameter the file lacks is an error, and so is an
array of a ``.npz`` that is no named parameter of forward: ``**kwargs`` takes none
(Hugging Face models take flags there, so a misspelt array name is caught, not dropped).
Data whose arrays name no parameter keep the old rule: one input, ``x`` in a ``.npz``.
Label arrays (``y``, ``labels``, ``label``) feed an optional parameter of that name
never: Hugging Face models take ``labels=None`` to compute a loss.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qconvert.errors import DataError
from qconvert.io.data import LABEL_KEYS

__all__ = ["ForwardParam", "forward_params", "input_names_for", "input_names_for_keys", "named_params"]


@dataclass(frozen=True)
class ForwardParam:
    name: str
    required: bool


def forward_params(model: torch.nn.Module) -> tuple[ForwardParam, ...]:
    """Positional parameters of ``model.forward`` (none when its signature cannot be read)."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return ()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(ForwardParam(p.name, p.default is inspect.Parameter.empty) for p in params if p.kind in kinds)


def named_params(model: torch.nn.Module) -> tuple[ForwardParam, ...]:
    """Parameters of ``model.forward`` an array can be bound to by name (positional and keyword-only), in forward order."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return ()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(ForwardParam(p.name, p.default is inspect.Parameter.empty) for p in params if p.kind in kinds)


def input_names_for(model: torch.nn.Module, data_path: Path | None) -> tuple[str, ...]:
    """The model inputs ``data_path`` feeds, in forward order.

    Raises:
        DataError: the model needs several inputs and the data is not a ``.npz`` keyed by
            them, the ``.npz`` misses a required one, or it has an array that is no
            parameter of forward (the message names the file's keys and forward's parameters).
    """
    return input_names_for_keys(model, _npz_keys(data_path), data_path, strict=True)


def input_names_for_keys(model: torch.nn.Module, keys: set[str], data_path: Path | None, strict: bool = False) -> tuple[str, ...]:
    """As ``input_names_for``, for data whose arrays are named ``keys`` (empty: unnamed arrays).

    ``strict``: a key that is no parameter of forward (nor labels, nor ``x`` for a single input) is an error.
    """
    params = named_params(model)
    if not params:
        return ("input_0",)
    taken = [p.name for p in params]

    def feeds(p: ForwardParam) -> bool:
        return p.name in keys and (p.required or p.name not in LABEL_KEYS)

    def check_unknown(allowed: set[str]) -> None:
        unknown = sorted(keys - allowed - set(LABEL_KEYS))
        if strict and unknown:
            raise DataError(f"{data_path}: array '{unknown[0]}' is no parameter of the model's forward, which takes {taken}; "
                            f"name each array after the parameter it feeds (labels: {', '.join(LABEL_KEYS)})")

    if not any(feeds(p) for p in params):
        required = [p.name for p in params if p.required]
        if len(required) > 1 and data_path is not None:
            raise DataError(f"{data_path}: the model takes {len(required)} inputs {required}; "
                            "give a .npz with one array per input, keyed by those names")
        if len(params) > 1 or "x" in keys:  # one parameter and no 'x': the loader names the array it wants
            check_unknown({"x"})
        return (params[0].name,)
    missing = [p.name for p in params if p.required and not feeds(p)]
    if missing:
        raise DataError(f"{data_path}: no array for the model input '{missing[0]}'; the file has {sorted(keys)}, "
                        f"the model's forward takes {taken}")
    names = tuple(p.name for p in params if feeds(p))
    check_unknown(set(names))
    return names


def _npz_keys(path: Path | None) -> set[str]:
    if path is None or path.suffix != ".npz" or not path.is_file():
        return set()
    try:
        with np.load(path) as z:
            return set(z.keys())
    except Exception:  # noqa: BLE001 - an empty, truncated or foreign file: the data loader reports it, in one line
        return set()
