"""Per-layer passes cut batches to a memory budget; the figures do not depend on the cut."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qconvert.verify.chunks import ChunkSizer


def test_first_sub_batch_is_one_sample_then_the_budget_decides() -> None:
    sizer = ChunkSizer(budget=1000)
    x = np.arange(20).reshape(20, 1)
    sizes = []
    for (chunk,) in sizer.chunks([x]):
        sizes.append(len(chunk))
        sizer.observed(300 * len(chunk), len(chunk))  # 300 bytes recorded per sample
    assert sizes == [1, 3, 3, 3, 3, 3, 3, 1]
    assert sum(sizes) == 20


def test_layer_report_is_the_same_whatever_the_sub_batches(digits: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from qconvert.core.quantize import calibrate, quantize
    from qconvert.io.data import open_dataset
    from qconvert.session import prepare_session
    from qconvert.verify import chunks, layerwise

    session = prepare_session(f"{digits['model']}:build", digits["recipe"], digits["calib"], digits["weights"], None, digits["eval"])
    stats = calibrate(session.captured, session.recipe, session.calibration_batches())
    qm = quantize(session.captured, session.recipe, stats)
    data = open_dataset(digits["eval"], session.captured.input_names, None)
    whole = layerwise.layer_report(qm, stats, data, batch_size=64, limit=128)
    monkeypatch.setattr(layerwise, "ChunkSizer", lambda: chunks.ChunkSizer(budget=1))  # one sample per sub-batch
    cut = layerwise.layer_report(qm, stats, data, batch_size=64, limit=128)
    assert cut.samples == whole.samples == 128
    assert [r.key for r in cut.layers] == [r.key for r in whole.layers]
    for a, b in zip(cut.layers, whole.layers):
        assert a.sqnr_db == pytest.approx(b.sqnr_db, rel=1e-6, abs=1e-6), (a, b)
