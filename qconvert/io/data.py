"""Streaming calibration/evaluation data: .npy, .npz and image folders.

Arrays are memory-mapped where the format allows and read batch by batch, so
memory does not grow with the number of samples.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qconvert.errors import DataError
from qconvert.io.files import check_dir, check_file, first_line, reading
from qconvert.recipe.model import Preprocess

__all__ = ["IMAGE_SUFFIXES", "Batch", "Dataset", "open_dataset"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
LABEL_KEYS = ("y", "labels", "label")


@dataclass(frozen=True)
class Batch:
    """One batch: model inputs in forward-parameter order, and labels if known."""

    inputs: tuple[np.ndarray, ...]
    labels: np.ndarray | None


class Dataset:
    """A sized, re-iterable source of batches for a model with named inputs."""

    def __init__(self, path: Path, arrays: dict[str, np.ndarray] | None, images: list[Path] | None,
                 labels: np.ndarray | None, preprocess: Preprocess | None, input_names: tuple[str, ...]) -> None:
        self.path, self._arrays, self._images = path, arrays, images
        self.labels, self._preprocess, self.input_names = labels, preprocess, input_names
        self.size = len(images) if images is not None else len(next(iter(arrays.values())))  # type: ignore[union-attr]  # one of the two is given

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[Batch]:
        n = self.size if limit is None else min(limit, self.size)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            labels = None if self.labels is None else np.asarray(self.labels[start:stop])
            if self._images is not None:
                inputs: tuple[np.ndarray, ...] = (self._load_images(self._images[start:stop]),)
            else:
                assert self._arrays is not None
                inputs = tuple(np.ascontiguousarray(self._arrays[k][start:stop]) for k in self.input_names)
            yield Batch(tuple(_as_model_dtype(a) for a in inputs), labels)

    def _load_images(self, files: list[Path]) -> np.ndarray:
        from PIL import Image

        pp = self._preprocess
        assert pp is not None
        out = []
        for f in files:
            try:
                with Image.open(f) as opened:
                    im = opened.convert("L" if pp.channel_order == "gray" else "RGB").resize((pp.size[1], pp.size[0]))
                    a: np.ndarray = np.asarray(im, dtype=np.float32)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
                raise DataError(f"{f}: cannot read image ({first_line(e)}); remove or replace the file") from e
            a = a[:, :, None] if a.ndim == 2 else a
            if pp.channel_order == "bgr":
                a = a[:, :, ::-1]
            a = (a * pp.scale - np.asarray(pp.mean, np.float32)) / np.asarray(pp.std, np.float32)
            out.append(a.transpose(2, 0, 1))
        return np.stack(out).astype(np.float32)


def _as_model_dtype(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.float64 or a.dtype == np.float16:
        return a.astype(np.float32)
    return a


def open_dataset(path: str | Path, input_names: tuple[str, ...], preprocess: Preprocess | None) -> Dataset:
    """Open a data source for a model whose forward takes ``input_names``.

    Raises:
        DataError: the path is missing or the content does not fit the model.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data not found: {path} ({_FIX})")
    if path.is_dir():
        return _open_images(check_dir(path, "image folder", DataError, _FIX), input_names, preprocess)
    if path.suffix not in (".npy", ".npz"):
        raise DataError(f"{path}: unsupported data format '{path.suffix}' (use a folder of images, .npy or .npz)")
    check_file(path, f"{path.suffix} data file", DataError, _FIX)
    if path.suffix == ".npy":
        with reading(path, ".npy file", DataError, "write it with numpy.save"):
            x = np.load(path, mmap_mode="r")
        if len(input_names) != 1:
            raise DataError(f"{path}: the model takes {len(input_names)} inputs {list(input_names)}; use a .npz keyed by those names")
        _check_samples(path, "the array", x)
        return Dataset(path, {input_names[0]: x}, None, None, preprocess, input_names)
    with reading(path, ".npz file", DataError, "write it with numpy.savez(path, x=inputs, y=labels)"):
        return _open_npz(path, input_names, preprocess)


_FIX = "give a folder of images, a .npy, or a .npz with 'x' and optional 'y'"


def _check_samples(path: Path, what: str, a: np.ndarray) -> None:
    """A sample array: at least one dimension (the samples), numbers, and at least one sample."""
    if a.ndim == 0:
        raise DataError(f"{path}: {what} is a single value, not samples; store an array with the samples first, e.g. (N, C, H, W)")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise DataError(f"{path}: {what} holds {a.dtype} values, not numbers; store float32 (or integer) arrays")
    if len(a) == 0:
        raise DataError(f"{path}: contains no samples")


def _open_npz(path: Path, input_names: tuple[str, ...], preprocess: Preprocess | None) -> Dataset:
    z = np.load(path, mmap_mode="r")
    if not hasattr(z, "keys"):
        raise DataError(f"{path}: holds a single array, not a .npz archive; rename it to .npy or save it with numpy.savez(path, x=...)")
    keys = list(z.keys())
    arrays: dict[str, np.ndarray] = {}
    if len(input_names) == 1 and "x" in keys:
        arrays[input_names[0]] = z["x"]
    else:
        missing = [n for n in input_names if n not in keys]
        if missing:
            raise DataError(
                f"{path}: no array for model input(s) {missing}; the file has {keys}. "
                f"Name arrays after the forward parameters {list(input_names)} (or 'x' for a single input)"
            )
        arrays = {n: z[n] for n in input_names}
    for n, a in arrays.items():
        _check_samples(path, f"array '{n}'", a)
    sizes = {n: len(a) for n, a in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise DataError(f"{path}: inputs have different numbers of samples {sizes}")
    labels = next((z[k] for k in LABEL_KEYS if k in keys), None)
    if labels is not None and labels.ndim == 0:
        raise DataError(f"{path}: the labels are a single value; store one label per sample")
    samples = next(iter(sizes.values()))
    if labels is not None and len(labels) != samples:
        raise DataError(f"{path}: {len(labels)} labels for {samples} samples")
    if samples == 0:
        raise DataError(f"{path}: contains no samples")
    return Dataset(path, arrays, None, labels, preprocess, input_names)


def _open_images(path: Path, input_names: tuple[str, ...], preprocess: Preprocess | None) -> Dataset:
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{path}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
    if preprocess is None:
        raise DataError(f"{path}: image folders need a 'preprocess' section in the recipe (size, mean, std, channel_order)")
    if len(input_names) != 1:
        raise DataError(f"{path}: image folders feed single-input models; this model takes {list(input_names)}")
    classes = sorted({f.parent.name for f in files})
    labels = None
    if len(classes) > 1 and all(f.parent.parent == path for f in files):
        index = {c: i for i, c in enumerate(classes)}
        labels = np.asarray([index[f.parent.name] for f in files], dtype=np.int64)
    return Dataset(path, None, files, labels, preprocess, input_names)
