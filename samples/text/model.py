"""A small transformer text classifier: which standard-library package a docstring comes from.

token embedding + learned positions -> 2-layer transformer encoder (d=64, 4 heads,
feed-forward 128) -> mean over the unmasked tokens -> linear head (8 packages)

Inputs are ``input_ids`` (int64, 0 = padding, 1 = unknown word) and
``attention_mask`` (int64, 1 for real tokens), both [batch, 32].
"""

from __future__ import annotations

import torch
from torch import nn

VOCAB = 1024
SEQ_LEN = 32
PACKAGES = ("asyncio", "email", "http", "importlib", "logging", "multiprocessing", "unittest", "xml")


class TextClassifier(nn.Module):
    def __init__(self, vocab: int = VOCAB, d: int = 64, heads: int = 4, ff: int = 128, layers: int = 2,
                 seq_len: int = SEQ_LEN, classes: int = len(PACKAGES), dropout: float = 0.1) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, d, padding_idx=0)
        self.positions = nn.Parameter(torch.zeros(1, seq_len, d))
        layer = nn.TransformerEncoderLayer(d, heads, ff, dropout=dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.tokens(input_ids) + self.positions[:, : input_ids.shape[1]]
        x = self.encoder(x, src_key_padding_mask=attention_mask == 0)
        mask = attention_mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(pooled)


def build() -> TextClassifier:
    """Factory used by ``qconvert build --model samples/text/model.py:build``."""
    return TextClassifier()
