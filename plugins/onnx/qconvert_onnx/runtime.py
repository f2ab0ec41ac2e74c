"""Run an ONNX artifact in onnxruntime. numpy and onnxruntime only (no torch)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["run_onnx", "session"]


@lru_cache(maxsize=8)
def session(path: str, mtime: float):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def run_onnx(path: Path, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = session(str(path), path.stat().st_mtime)
    feed = {i.name: inputs[i.name] for i in sess.get_inputs()}
    return [np.asarray(o) for o in sess.run(None, feed)]
