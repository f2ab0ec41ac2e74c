"""Real data that packages ship, turned into calibration and evaluation sets.

Photos come from scikit-image (``skimage.data``), scikit-learn (``load_sample_images``)
and matplotlib's sample data. Each split draws "views" (seeded random resized crops and
flips) from its OWN photos: no photo that feeds calibration is ever seen in evaluation
(``CALIB_PHOTOS`` and ``EVAL_PHOTOS`` are disjoint; a test checks it). The stereo
motorcycle pair of scikit-image is one scene, so only its left view is used.

Text (BERT) uses the dataset descriptions scikit-learn ships (real English), hashed into
a small vocabulary; calibration and evaluation read different descriptions. The LSTM
reads the rows of scikit-learn's 8x8 digits (calibration and evaluation are different
digits). Audio is synthetic (seeded harmonic tones with vibrato and noise): no package
here ships recorded speech.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CALIB_PHOTOS",
    "EVAL_PHOTOS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DataSpec",
    "digit_rows",
    "load_photo",
    "normalize",
    "photo_views",
    "text_tokens",
    "tones",
    "write_npz",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Disjoint by photo. Colour photos of objects split roughly evenly; textures and gray photos too.
CALIB_PHOTOS = ("astronaut", "coffee", "hubble_deep_field", "immunohistochemistry", "china", "camera", "coins", "brick", "gravel")
EVAL_PHOTOS = ("chelsea", "rocket", "retina", "motorcycle", "flower", "grace_hopper", "moon", "grass", "clock")


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        if name == "motorcycle":
            return skimage.data.stereo_motorcycle()[0]
        return getattr(skimage.data, name)()

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")

    return load


def _matplotlib(file: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import matplotlib
        from PIL import Image

        with Image.open(Path(matplotlib.get_data_path()) / "sample_data" / file) as im:
            return np.asarray(im.convert("RGB"))

    return load


_SOURCES: dict[str, Callable[[], np.ndarray]] = {
    **{n: _skimage(n) for n in ("astronaut", "coffee", "hubble_deep_field", "immunohistochemistry", "camera", "coins", "brick",
                                "gravel", "chelsea", "rocket", "retina", "motorcycle", "moon", "grass", "clock")},
    "china": _sklearn("china"),
    "flower": _sklearn("flower"),
    "grace_hopper": _matplotlib("grace_hopper.jpg"),
}


def load_photo(name: str) -> np.ndarray:
    """One shipped photo as RGB uint8 (H, W, 3); gray photos are repeated over 3 channels."""
    a = np.asarray(_SOURCES[name]())
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).astype(np.uint8) if a.dtype.kind == "f" else a.astype(np.uint8)
    return a[:, :, :3]


def photo_views(photos: tuple[str, ...], n: int, size: int, seed: int) -> np.ndarray:
    """``n`` seeded views (random resized crop, scale 0.1-1, aspect 3/4-4/3, random flip) as uint8 (n, size, size, 3)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = [Image.fromarray(load_photo(p)) for p in photos]
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        im = images[i % len(images)]
        w, h = im.size
        area = w * h * rng.uniform(0.1, 1.0)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw = int(min(w, round(np.sqrt(area * aspect))))
        ch = int(min(h, round(np.sqrt(area / aspect))))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        view = im.crop((x0, y0, x0 + cw, y0 + ch)).resize((size, size), Image.BILINEAR)
        a = np.asarray(view)
        out[i] = a[:, ::-1] if rng.random() < 0.5 else a
    return out


def normalize(views: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """uint8 NHWC views -> float32 NCHW, ``(x / 255 - mean) / std``."""
    x = views.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


_CALIB_TEXTS = ("load_iris", "load_wine", "load_diabetes")
_EVAL_TEXTS = ("load_breast_cancer", "load_digits", "load_linnerud")


def text_tokens(split: str, n: int, length: int, vocab: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``input_ids`` and ``attention_mask`` (int64, (n, length)) from windows of real English text.

    Words are hashed into ``vocab - 2`` ids (0 = padding, 1 = start); each sample is a
    random window of 8..``length - 1`` words, padded, with its attention mask.
    """
    import sklearn.datasets

    names = _CALIB_TEXTS if split == "calib" else _EVAL_TEXTS
    words = [w for name in names for w in re.findall(r"[a-z]+", getattr(sklearn.datasets, name)().DESCR.lower())]
    ids = np.asarray([2 + zlib.crc32(w.encode()) % (vocab - 2) for w in words], np.int64)
    rng = np.random.default_rng(seed)
    input_ids = np.zeros((n, length), np.int64)
    mask = np.zeros((n, length), np.int64)
    for i in range(n):
        k = int(rng.integers(8, length))
        start = int(rng.integers(0, len(ids) - k))
        input_ids[i, 0], input_ids[i, 1:k + 1] = 1, ids[start:start + k]
        mask[i, :k + 1] = 1
    return input_ids, mask


def tones(n: int, samples: int, seed: int) -> np.ndarray:
    """Synthetic audio, float32 (n, samples): 1-3 harmonic tones at 16 kHz with vibrato, an envelope and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples, dtype=np.float64) / 16000.0
    out = np.empty((n, samples), np.float32)
    for i in range(n):
        y = np.zeros_like(t)
        for _ in range(int(rng.integers(1, 4))):
            f0 = rng.uniform(80, 800)
            phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.02 * np.sin(2 * np.pi * rng.uniform(3, 8) * t))) / 16000.0
            for h in range(1, 5):
                y += rng.uniform(0, 1) / h * np.sin(h * phase)
        env = np.clip(np.sin(np.pi * (t - rng.uniform(0, 0.1)) / (t[-1] + 0.1)), 0, None)
        y = y * env + rng.normal(0, 0.05, samples)
        out[i] = (y / (np.abs(y).max() + 1e-6) * rng.uniform(0.3, 1.0)).astype(np.float32)
    return out


def digit_rows(split: str, n: int) -> np.ndarray:
    """scikit-learn's 8x8 digits as sequences of 8 rows of 8 values in [0, 1], float32 (n, 8, 8).

    Calibration takes digits from the start of the set, evaluation from the end (disjoint).
    """
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float32) / 16.0
    return np.ascontiguousarray(images[:n] if split == "calib" else images[len(images) - n:])


@dataclass(frozen=True)
class DataSpec:
    """What a zoo model reads: ``kind`` (photo, tokens, audio, rows), image side and normalization."""

    kind: str
    size: int = 64
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


SEEDS = {"calib": 1000, "eval": 2000}
COUNTS = {"calib": 256, "eval": 512}


def arrays(spec: DataSpec, split: str, n: int | None = None) -> dict[str, np.ndarray]:
    """The named input arrays of one split (``calib`` or ``eval``) for a model reading ``spec``."""
    n = COUNTS[split] if n is None else n
    seed = SEEDS[split]
    if spec.kind == "photo":
        photos = CALIB_PHOTOS if split == "calib" else EVAL_PHOTOS
        return {"x": normalize(photo_views(photos, n, spec.size, seed), spec.mean, spec.std)}
    if spec.kind == "tokens":
        ids, mask = text_tokens(split, n, 32, 1000, seed)
        return {"input_ids": ids, "attention_mask": mask}
    if spec.kind == "audio":
        return {"x": tones(n, 4000, seed)}
    if spec.kind == "rows":
        return {"x": digit_rows(split, n)}
    raise ValueError(f"unknown data kind {spec.kind!r}")


def write_npz(spec: DataSpec, split: str, path: Path, n: int | None = None) -> Path:
    """Write one split as a ``.npz`` the CLI takes (``x`` or one array per forward parameter)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays(spec, split, n))
    tmp.replace(path)
    return path
