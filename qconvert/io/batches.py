"""Data from Python: an iterable of batches (a DataLoader, a list) or arrays in memory.

``Batches`` reads its source afresh for every pass (calibration, bias correction, each
target's verification) and re-cuts what it yields into the batch size a step asks for, so
memory holds at most one source batch and one requested batch, whatever the number of
samples, and a build's figures do not depend on the loader's batch size.

A source batch becomes model inputs and labels so:
- with ``transform_fn`` (as in NNCF): the inputs are ``transform_fn(batch)`` (a tensor, a
  tuple of them, or a dict keyed by forward parameter); the labels are ``labels_fn(batch)``,
  or by default the last element of a tuple/list batch when it is a 1-D integer array with
  one entry per sample;
- without: a tensor/array is the one input; a tuple/list holds the inputs in forward order,
  and one element more is the labels; a dict is keyed by forward parameter (labels under
  ``y``, ``labels`` or ``label``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from qconvert.errors import DataError
from qconvert.io.data import LABEL_KEYS, Batch, Dataset

__all__ = ["Arrays", "Batches", "StreamedDataset", "array_dataset"]

BatchFn = Callable[[Any], Any]


@dataclass(frozen=True)
class Batches:
    """An iterable of batches with the NNCF-style functions that read it.

    ``source`` must be re-iterable (a DataLoader, a list, or an object whose ``__iter__``
    starts over): a build reads it several times. A generator is read only once, so it is
    refused; wrap it in a function-backed iterable instead.
    """

    source: Iterable[Any]
    transform_fn: BatchFn | None = None
    labels_fn: BatchFn | None = None
    #: What reports and messages call this data.
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or f"<{type(self.source).__name__}>"


@dataclass(frozen=True)
class Arrays:
    """Samples in memory: one array per model input (first axis = samples), optional labels."""

    inputs: Mapping[str, np.ndarray] | tuple[np.ndarray, ...]
    labels: np.ndarray | None = None
    name: str = "<arrays>"


def _numpy(value: Any, what: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        a = value
    elif hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor, without importing torch here
        a = value.detach().cpu().numpy()
    else:
        try:
            a = np.asarray(value)
        except (TypeError, ValueError) as e:
            raise DataError(f"{what}: cannot be read as an array ({type(value).__name__})") from e
    if a.dtype == np.float64 or a.dtype == np.float16:
        a = a.astype(np.float32)
    if a.ndim == 0:
        raise DataError(f"{what}: a scalar, not a batch (the first axis must be the samples)")
    return a


def _is_labels(value: Any, n: int) -> bool:
    try:
        a = _numpy(value, "labels")
    except DataError:
        return False
    return a.ndim == 1 and len(a) == n and a.dtype.kind in "iu"


class StreamedDataset(Dataset):
    """A ``Dataset`` over ``Batches``: batches re-cut to the size asked, never all held."""

    def __init__(self, source: Batches, input_names: tuple[str, ...]) -> None:
        if iter(source.source) is source.source:
            raise DataError(f"{source.label}: an iterator or generator can be read only once; qconvert reads the data "
                            "several times: pass a DataLoader, a list of batches, or an iterable that starts over")
        self.path = Path(source.label)
        self.input_names = input_names
        self._source = source
        self._preprocess = None
        self._first = self._convert(next(self._raw(), None))

    @cached_property
    def size(self) -> int:  # type: ignore[override]  # a cached property for what Dataset computes at init
        """Samples in one pass: a DataLoader's sampler length when it keeps every batch, else counted in one pass."""
        src = self._source.source
        sampler = getattr(src, "sampler", None)  # a DataLoader: its sampler says how many samples one pass yields
        if getattr(src, "dataset", None) is not None and hasattr(sampler, "__len__") and not getattr(src, "drop_last", False) \
                and getattr(src, "batch_size", None) is not None:
            return len(sampler)  # type: ignore[arg-type]  # has __len__, checked above
        return sum(len(self._convert(raw).inputs[0]) for raw in self._raw())

    @property
    def labels(self) -> np.ndarray | None:
        """The first batch's labels: whether the data is labelled (the stream's labels are never all held)."""
        return self._first.labels

    @labels.setter
    def labels(self, value: np.ndarray | None) -> None:
        raise AttributeError("labels of streamed data are read from its batches")

    def _raw(self) -> Iterator[Any]:
        return iter(self._source.source)

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[Batch]:
        pending: list[Batch] = []
        held = 0
        sent = 0
        for raw in self._raw():
            b = self._convert(raw)
            if (b.labels is None) != (self._first.labels is None):
                raise DataError(f"{self.path}: some batches have labels and some do not")
            pending.append(b)
            held += len(b.inputs[0])
            while held >= batch_size and (limit is None or sent < limit):
                out, pending, held = _cut(pending, min(batch_size, limit - sent if limit is not None else batch_size))
                sent += len(out.inputs[0])
                yield out
            if limit is not None and sent >= limit:
                return
        if held and (limit is None or sent < limit):
            out, _, _ = _cut(pending, held if limit is None else min(held, limit - sent))
            yield out

    def _convert(self, raw: Any) -> Batch:
        if raw is None:
            raise DataError(f"{self.path}: yields no batches")
        src = self._source
        if src.transform_fn is not None:
            try:
                x = src.transform_fn(raw)
            except Exception as e:
                raise DataError(f"{self.path}: transform_fn failed on a batch: {type(e).__name__}: {e}") from e
            inputs = self._inputs(x)
            n = len(inputs[0])
            if src.labels_fn is not None:
                y = src.labels_fn(raw)
                labels = None if y is None else _numpy(y, f"{self.path}: labels_fn")
            else:
                last = raw[-1] if isinstance(raw, (tuple, list)) and len(raw) >= 2 else None
                labels = _numpy(last, "labels") if last is not None and _is_labels(last, n) else None
        else:
            inputs, labels = self._split(raw)
            if src.labels_fn is not None:
                y = src.labels_fn(raw)
                labels = None if y is None else _numpy(y, f"{self.path}: labels_fn")
        n = len(inputs[0])
        if any(len(a) != n for a in inputs) or (labels is not None and len(labels) != n):
            sizes = [len(a) for a in inputs] + ([len(labels)] if labels is not None else [])
            raise DataError(f"{self.path}: a batch's inputs and labels have different numbers of samples {sizes}")
        return Batch(inputs, labels)

    def _inputs(self, x: Any) -> tuple[np.ndarray, ...]:
        if isinstance(x, Mapping):
            missing = [k for k in self.input_names if k not in x]
            if missing:
                raise DataError(f"{self.path}: a batch has no input(s) {missing}; its keys are {sorted(x)}")
            return tuple(_numpy(x[k], f"{self.path}: input '{k}'") for k in self.input_names)
        parts = tuple(x) if isinstance(x, (tuple, list)) else (x,)
        if len(parts) != len(self.input_names):
            raise DataError(f"{self.path}: a batch gives {len(parts)} input(s) but the model takes {len(self.input_names)} "
                            f"{list(self.input_names)}; pass transform_fn to pick them")
        return tuple(_numpy(p, f"{self.path}: input {i}") for i, p in enumerate(parts))

    def _split(self, raw: Any) -> tuple[tuple[np.ndarray, ...], np.ndarray | None]:
        k = len(self.input_names)
        if isinstance(raw, Mapping):
            label_key = next((key for key in LABEL_KEYS if key in raw and key not in self.input_names), None)
            return self._inputs(raw), None if label_key is None else _numpy(raw[label_key], f"{self.path}: labels")
        if isinstance(raw, (tuple, list)):
            if len(raw) == k:
                return self._inputs(raw), None
            if len(raw) == k + 1:
                return self._inputs(raw[:k]), _numpy(raw[k], f"{self.path}: labels")
            raise DataError(f"{self.path}: a batch has {len(raw)} elements but the model takes {k} input(s) "
                            f"{list(self.input_names)} (plus optional labels); pass transform_fn to pick the inputs")
        return self._inputs(raw), None


def _cut(pending: list[Batch], n: int) -> tuple[Batch, list[Batch], int]:
    """The first ``n`` samples of ``pending`` as one batch, and what is left."""
    take: list[Batch] = []
    need = n
    rest = list(pending)
    while need:
        b = rest.pop(0)
        m = len(b.inputs[0])
        if m <= need:
            take.append(b)
            need -= m
        else:
            take.append(Batch(tuple(a[:need] for a in b.inputs), None if b.labels is None else b.labels[:need]))
            rest.insert(0, Batch(tuple(a[need:] for a in b.inputs), None if b.labels is None else b.labels[need:]))
            need = 0
    joined = Batch(tuple(np.ascontiguousarray(np.concatenate([b.inputs[i] for b in take])) for i in range(len(take[0].inputs))),
                   None if take[0].labels is None else np.concatenate([b.labels for b in take]))
    return joined, rest, sum(len(b.inputs[0]) for b in rest)


def array_dataset(source: Arrays, input_names: tuple[str, ...]) -> Dataset:
    """A ``Dataset`` over arrays in memory, keyed by ``input_names`` (a tuple in forward order)."""
    if isinstance(source.inputs, Mapping) and len(input_names) == 1 and input_names[0] not in source.inputs and "x" in source.inputs:
        source = Arrays({input_names[0]: source.inputs["x"]}, source.labels, source.name)  # 'x' for a single input, as in a .npz
    if isinstance(source.inputs, Mapping):
        missing = [n for n in input_names if n not in source.inputs]
        if missing:
            raise DataError(f"{source.name}: no array for model input(s) {missing}; given {sorted(source.inputs)}")
        arrays = {n: _numpy(source.inputs[n], f"{source.name}: input '{n}'") for n in input_names}
    else:
        if len(source.inputs) != len(input_names):
            raise DataError(f"{source.name}: {len(source.inputs)} array(s) for a model that takes {len(input_names)} input(s) "
                            f"{list(input_names)}")
        arrays = {n: _numpy(a, f"{source.name}: input '{n}'") for n, a in zip(input_names, source.inputs)}
    sizes = {n: len(a) for n, a in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise DataError(f"{source.name}: inputs have different numbers of samples {sizes}")
    n = next(iter(sizes.values()))
    if n == 0:
        raise DataError(f"{source.name}: contains no samples")
    labels = None if source.labels is None else _numpy(source.labels, f"{source.name}: labels")
    if labels is not None and len(labels) != n:
        raise DataError(f"{source.name}: {len(labels)} labels for {n} samples")
    return Dataset(Path(source.name), arrays, None, labels, None, input_names)
