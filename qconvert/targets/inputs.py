"""Integer model inputs (token ids) in the width a runtime's model declares. numpy only.

torch hands token ids over as int64, while converters may declare int32 inputs (TFLite does).
Narrowing is safe only when every value fits; a value that does not is bad input, named in
one line, never a silent wrap-around.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["fit_integer_input"]


def fit_integer_input(x: np.ndarray, dtype: Any, runtime: str) -> np.ndarray:
    """``x`` in ``dtype`` when both are integer types; other inputs are returned as they are.

    Raises ``ValueError`` naming the range and ``runtime``'s declared type when a value does not fit.
    """
    if not (np.issubdtype(x.dtype, np.integer) and np.issubdtype(dtype, np.integer)) or x.dtype == dtype:
        return x
    info = np.iinfo(dtype)
    if x.size and (x.min() < info.min or x.max() > info.max):
        raise ValueError(f"input values {x.min()}..{x.max()} do not fit the {runtime} model's {np.dtype(dtype).name} input")
    return x.astype(dtype)
