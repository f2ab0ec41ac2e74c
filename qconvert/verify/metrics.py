"""Streaming comparison metrics between a reference output and a candidate.

numpy only: this module is used by ``qconvert verify`` on boards without torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["AccuracyAccumulator", "CompareAccumulator", "Comparison"]


@dataclass(frozen=True)
class Comparison:
    """How close a candidate is to a reference over a whole data set."""

    samples: int
    sqnr_db: float
    max_abs_error: float
    cosine: float
    top1_agreement: float | None
    max_lsb_error: float | None


class CompareAccumulator:
    """Accumulates comparison statistics batch by batch (memory independent of data size)."""

    def __init__(self, lsb: float | None = None, classifier: bool = True) -> None:
        self.lsb, self.classifier = lsb, classifier
        self.n = 0
        self.signal = self.noise = self.dot = self.ref_sq = self.cand_sq = 0.0
        self.max_abs = 0.0
        self.agree = self.positions = 0

    def update(self, ref: np.ndarray, cand: np.ndarray) -> None:
        ref64, cand64 = np.asarray(ref, np.float64), np.asarray(cand, np.float64)
        if ref64.shape != cand64.shape:
            raise ValueError(f"output shapes differ: reference {ref64.shape}, candidate {cand64.shape}")
        err = cand64 - ref64
        self.signal += float(np.sum(ref64 * ref64))
        self.noise += float(np.sum(err * err))
        self.dot += float(np.sum(ref64 * cand64))
        self.ref_sq += float(np.sum(ref64 * ref64))
        self.cand_sq += float(np.sum(cand64 * cand64))
        self.max_abs = max(self.max_abs, float(np.max(np.abs(err))) if err.size else 0.0)
        if self.classifier and ref64.ndim >= 2:
            axis = _class_axis(ref64.ndim)
            same = ref64.argmax(axis=axis) == cand64.argmax(axis=axis)
            self.agree += int(np.sum(same))
            self.positions += same.size
        self.n += ref64.shape[0] if ref64.ndim else 1

    def result(self) -> Comparison:
        sqnr = math.inf if self.noise == 0 else 10.0 * math.log10(max(self.signal, 1e-300) / self.noise)
        denom = math.sqrt(self.ref_sq * self.cand_sq)
        cosine = self.dot / denom if denom > 0 else 1.0
        top1 = self.agree / self.positions if (self.classifier and self.positions) else None
        lsb = self.max_abs / self.lsb if self.lsb else None
        return Comparison(self.n, sqnr, self.max_abs, cosine, top1, lsb)


def _class_axis(ndim: int) -> int:
    """Where the class scores are: the last axis of logits (N, C) and token logits (N, T, C);
    axis 1 of a segmentation map (N, C, H, W). Agreement is counted per position."""
    return 1 if ndim == 4 else -1


class AccuracyAccumulator:
    """Top-1 accuracy of classifier logits against integer labels."""

    def __init__(self) -> None:
        self.correct = self.n = 0

    def update(self, logits: np.ndarray, labels: np.ndarray) -> None:
        self.correct += int(np.sum(np.asarray(logits).argmax(axis=-1) == np.asarray(labels).reshape(-1)))
        self.n += len(labels)

    def result(self) -> float | None:
        return 100.0 * self.correct / self.n if self.n else None
