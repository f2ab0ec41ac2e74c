"""Integer inputs narrowed to the width a runtime's model declares (token ids: int64 -> int32)."""

from __future__ import annotations

import numpy as np
import pytest

from qconvert.targets import fit_integer_input


def test_ids_that_fit_are_narrowed_exactly() -> None:
    ids = np.array([[0, 1, 2**31 - 1, -(2**31)]], dtype=np.int64)
    out = fit_integer_input(ids, np.int32, "TFLite")
    assert out.dtype == np.int32
    assert out.tolist() == ids.tolist()


def test_an_id_beyond_the_declared_width_is_named() -> None:
    ids = np.array([[5, 2**31]], dtype=np.int64)
    with pytest.raises(ValueError, match=r"5\.\.2147483648 do not fit the TFLite model's int32 input"):
        fit_integer_input(ids, np.int32, "TFLite")


def test_float_inputs_and_matching_widths_pass_through() -> None:
    x = np.ones((1, 3), dtype=np.float32)
    assert fit_integer_input(x, np.int8, "TFLite") is x
    ids = np.zeros((1, 3), dtype=np.int32)
    assert fit_integer_input(ids, np.int32, "TFLite") is ids
