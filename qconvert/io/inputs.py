"""Which forward parameters a data file feeds, and in what order.

A model with several inputs (a transformer's ``input_ids`` and ``attention_mask``)
reads a ``.npz`` with one array per input, keyed by the forward parameter's name.
Inputs are passed positionally (that is how torch.export captures them), so the
names used are the longest prefix of the forward parameters the file provides:
a required parameter the file lacks, or an array for a parameter that comes after
one it lacks, is an error rather than an input silently bound to the wrong name.
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

__all__ = ["ForwardParam", "forward_params", "input_names_for", "input_names_for_keys"]


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


def input_names_for(model: torch.nn.Module, data_path: Path | None) -> tuple[str, ...]:
    """The model inputs ``data_path`` feeds, in forward order.

    Raises:
        DataError: the model needs several inputs and the data is not a ``.npz`` keyed by
            them, or the ``.npz`` misses one (the message names it and the file's keys).
    """
    return input_names_for_keys(model, _npz_keys(data_path), data_path)


def input_names_for_keys(model: torch.nn.Module, keys: set[str], data_path: Path | None) -> tuple[str, ...]:
    """As ``input_names_for``, for data whose arrays are named ``keys`` (empty: unnamed arrays)."""
    params = forward_params(model)
    if not params:
        return ("input_0",)

    def feeds(p: ForwardParam) -> bool:
        return p.name in keys and (p.required or p.name not in LABEL_KEYS)

    if not any(feeds(p) for p in params):
        required = [p.name for p in params if p.required]
        if len(required) > 1 and data_path is not None:
            raise DataError(f"{data_path}: the model takes {len(required)} inputs {required}; "
                            "give a .npz with one array per input, keyed by those names")
        return (params[0].name,)
    names: list[str] = []
    for p in params:
        if feeds(p):
            names.append(p.name)
            continue
        if p.required:
            raise DataError(f"{data_path}: no array for the model input '{p.name}'; the file has {sorted(keys)}, "
                            f"the model's forward takes {[q.name for q in params]}")
        later = [q.name for q in params[len(names) + 1:] if feeds(q)]
        if later:
            raise DataError(f"{data_path}: has '{later[0]}' but not '{p.name}', which comes before it in forward; "
                            f"inputs are passed in order, so add an array '{p.name}'")
        break
    return tuple(names)


def _npz_keys(path: Path | None) -> set[str]:
    if path is None or path.suffix != ".npz" or not path.is_file():
        return set()
    try:
        with np.load(path) as z:
            return set(z.keys())
    except Exception:  # noqa: BLE001 - an empty, truncated or foreign file: the data loader reports it, in one line
        return set()
