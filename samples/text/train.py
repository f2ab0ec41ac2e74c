"""Train the text sample and write weights.pt, vocab.txt, calib.npz and eval.npz.

Corpus: the docstrings of eight packages of Python's own standard library (read with
``ast`` from the installed sources, nothing downloaded); the label is the package.
Words are lower-cased runs of letters; the 1022 most frequent training words make
the vocabulary (0 = padding, 1 = unknown). Docstrings that occur in more than one
package are dropped. Deterministic for a given Python version (docstrings change
between versions; the committed data came from Python 3.11).

    python samples/text/train.py
"""

from __future__ import annotations

import ast
import collections
import re
import sysconfig
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from model import PACKAGES, SEQ_LEN, VOCAB, build  # type: ignore[import-not-found]

HERE = Path(__file__).parent
WORD = re.compile(r"[a-z]+")


def docstrings() -> tuple[list[list[str]], list[int]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    seen: dict[str, set[int]] = collections.defaultdict(set)
    for label, pkg in enumerate(PACKAGES):
        for f in sorted((root / pkg).rglob("*.py")):
            if "test" in f.relative_to(root / pkg).parts[:-1]:
                continue
            try:
                tree = ast.parse(f.read_text(encoding="utf-8", errors="ignore"))
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    text = " ".join(WORD.findall((ast.get_docstring(node) or "").lower()))
                    if len(text.split()) >= 4:
                        seen[text].add(label)
    unique = sorted((text, labels.pop()) for text, labels in seen.items() if len(labels) == 1)
    return [t.split()[:SEQ_LEN] for t, _ in unique], [label for _, label in unique]


def encode(texts: list[list[str]], vocab: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.zeros((len(texts), SEQ_LEN), np.int64)
    for i, words in enumerate(texts):
        ids[i, : len(words)] = [vocab.get(w, 1) for w in words]
    return ids, (ids != 0).astype(np.int64)


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    texts, labels = docstrings()
    order = np.random.default_rng(0).permutation(len(texts))
    n_train = int(0.8 * len(texts))
    train, held = order[:n_train], order[n_train:]
    counts = collections.Counter(w for i in train for w in texts[i])
    words = [w for w, _ in counts.most_common(VOCAB - 2)]
    vocab = {w: i + 2 for i, w in enumerate(words)}
    ids, mask = encode(texts, vocab)
    y = np.asarray(labels, np.int64)
    model = build()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-2)
    xt, mt, yt = torch.from_numpy(ids[train]), torch.from_numpy(mask[train]), torch.from_numpy(y[train])
    for _epoch in range(40):
        model.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 32):
            b = perm[i : i + 32]
            loss = F.cross_entropy(model(xt[b], mt[b]), yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(ids[held]), torch.from_numpy(mask[held])).argmax(1).numpy()
    print(f"{len(texts)} docstrings; held-out accuracy: {100 * (pred == y[held]).mean():.2f}% on {len(held)} samples")
    torch.save(model.state_dict(), HERE / "weights.pt")
    (HERE / "vocab.txt").write_text("<pad>\n<unk>\n" + "\n".join(words) + "\n")
    calib = train[:256]
    np.savez_compressed(HERE / "calib.npz", input_ids=ids[calib], attention_mask=mask[calib], y=y[calib])
    np.savez_compressed(HERE / "eval.npz", input_ids=ids[held], attention_mask=mask[held], y=y[held])


if __name__ == "__main__":
    main()
