"""TIDL's calibration frames, written in the type and normalization its import config declares.

TIDL's importer reads ``inData`` as ``numFrames`` raw frames of ``inElementType`` and, with
``inDataNorm = 1``, normalizes them itself as ``(pixel - inMean) * inScale``. So the frames
and the config must agree: where the recipe's ``preprocess`` turns 0-255 pixels into the
model input and the frames are exactly such pixels, the ``.bin`` holds uint8 pixels and the
config declares normalization; otherwise (data given as float arrays) it holds the model's
float32 inputs and the config declares float input without normalization. The count is the
recipe's ``calibration.num_samples`` (capped by the data), streamed batch by batch.
``calib_frames.npy`` always holds the model's float32 inputs, for inspection.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qconvert.targets import QuantizedModel
from qconvert_tidl.configs import InputSpec

__all__ = ["WrittenFrames", "write_frames"]

#: Largest distance of a de-normalized value from a whole pixel value that still counts as a pixel.
_PIXEL_TOL = 1e-2


@dataclass(frozen=True)
class WrittenFrames:
    """What was written: how many frames, and the input spec the config must declare for them."""

    count: int
    spec: InputSpec
    notes: tuple[str, ...] = ()


def _batches(qmodel: QuantizedModel) -> tuple[list[np.ndarray] | None, str]:
    if qmodel.calibration_batches is not None:
        return None, ""
    note = ("calibration frames: no calibration data in this build (--stats or a QAT checkpoint); "
            f"wrote the {len(qmodel.example_inputs[0])} example inputs instead")
    return [qmodel.example_inputs[0].detach().numpy().astype(np.float32)], note


def _iter(qmodel: QuantizedModel, fixed: list[np.ndarray] | None):
    if fixed is not None:
        yield from fixed
        return
    assert qmodel.calibration_batches is not None
    for batch in qmodel.calibration_batches():
        yield batch[0].detach().numpy().astype(np.float32)


def _pixels(frames: np.ndarray, spec: InputSpec) -> np.ndarray | None:
    """The uint8 pixels behind normalized frames, or None when the frames are not such pixels."""
    assert spec.mean is not None and spec.scale is not None
    shape = (1, -1, 1, 1)
    mean = np.asarray(spec.mean, np.float64).reshape(shape)
    scale = np.asarray(spec.scale, np.float64).reshape(shape)
    if mean.size != frames.shape[1]:
        return None
    pixels = frames.astype(np.float64) / scale + mean
    rounded = np.rint(pixels)
    if np.any(rounded < 0) or np.any(rounded > 255) or np.max(np.abs(pixels - rounded), initial=0.0) > _PIXEL_TOL:
        return None
    return rounded.astype(np.uint8)


def write_frames(qmodel: QuantizedModel, spec: InputSpec, npy: Path, binary: Path) -> WrittenFrames:
    """Stream the calibration inputs to ``npy`` (float32) and ``binary`` (as declared); returns the spec to declare."""
    fixed, note = _batches(qmodel)
    notes = [note] if note else []
    as_pixels = spec.mean is not None
    count = 0
    shape: tuple[int, ...] = ()
    raw = binary.with_suffix(".f32.tmp")
    with open(raw, "wb") as f_float, open(binary, "wb") as f_bin:
        for frames in _iter(qmodel, fixed):
            shape = frames.shape[1:]
            frames.tofile(f_float)
            count += len(frames)
            if as_pixels:
                pixels = _pixels(frames, spec)
                if pixels is None:
                    as_pixels = False
                else:
                    pixels.tofile(f_bin)
    if not as_pixels:
        if spec.mean is not None:
            notes.append("calibration frames: the data is not 0-255 pixels under the recipe's preprocess, so the frames are "
                         "the model's float32 inputs and the import config declares float input without normalization")
        spec = dataclasses.replace(spec, mean=None, scale=None)
        raw.replace(binary)
    floats = np.memmap(raw if raw.exists() else binary, dtype=np.float32, mode="r", shape=(count, *shape))
    out = np.lib.format.open_memmap(npy, mode="w+", dtype=np.float32, shape=(count, *shape))
    for start in range(0, count, 256):
        out[start:start + 256] = floats[start:start + 256]
    out.flush()
    del out, floats
    raw.unlink(missing_ok=True)
    return WrittenFrames(count, spec, tuple(notes))
