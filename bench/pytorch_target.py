"""Latency of the ``pytorch`` target's artifacts against float PyTorch, measured in one run.

Each model runs in its own process (torch.compile and quantized-engine state stay
apart). Float and int8 calls are interleaved (qconvert.verify.timing: 10th percentile), since
this machine is noisy. Every artifact is loaded the way README.md tells users:

- static (ResNet-18): ``torch.export.load`` + ``torch.compile`` with inductor's
  freezing (oneDNN int8). Peers: float eager, and float compiled the same way.
- dynamic (text sample, BERT-base-sized encoder with random weights):
  ``torch.jit.load`` of torch.ao dynamic quantized modules. Peer: float eager.

Batch 1 and 16 for every model, and batch 8 x 128 tokens for the BERT-sized encoder.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["resnet18", "text", "bert_base"]
BUDGET_S = float(os.environ.get("QCONVERT_BENCH_SECONDS", "20"))


def run() -> None:
    rows: list[dict[str, Any]] = []
    for name in MODELS:
        proc = subprocess.run([sys.executable, "-m", "bench.pytorch_target", name], cwd=ROOT, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr[-2000:]}")
            continue
        rows += json.loads(proc.stdout.strip().splitlines()[-1])
    print("| model | quantization | input | float eager ms | float compiled ms | int8 artifact ms | int8 vs eager | int8 vs compiled |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        comp = r.get("float_compiled")
        comp_ms = "-" if comp is None else f"{comp:.1f}"
        comp_ratio = "-" if comp is None else f"{comp / r['int8']:.2f}x"
        print(f"| {r['model']} | {r['mode']} | {r['input']} | {r['float_eager']:.1f} | {comp_ms} | "
              f"{r['int8']:.1f} | {r['float_eager'] / r['int8']:.2f}x | {comp_ratio} |")


def _ms(fns: dict[str, Callable[[], Any]]) -> dict[str, float]:
    from qconvert.verify.timing import interleaved_ms

    return interleaved_ms(fns, BUDGET_S)


def _artifact(model: Any, example: tuple[Any, ...], recipe_text: str, out: Path) -> Path:
    """Calibrate on the example, quantize for the pytorch target and emit, as ``qconvert build`` does."""
    from qconvert_pytorch import PyTorchOptions, PyTorchTarget

    from qconvert.core.capture import capture
    from qconvert.core.quantize import calibrate, quantize
    from qconvert.recipe import recipe_from_text

    recipe = recipe_from_text(recipe_text)
    target, options = PyTorchTarget(), PyTorchOptions()
    captured = capture(model, tuple(t[:2] for t in example))
    stats = calibrate(captured, recipe, [example])
    qmodel = quantize(captured, recipe, stats, target.constraints(options), target.name, target.placement(options))
    out.mkdir(parents=True, exist_ok=True)
    return target.emit(qmodel, out, options).path


def _static(name: str, tmp: Path) -> list[dict[str, Any]]:
    import torch
    import torch._inductor.config as inductor_config

    from bench import models

    model = getattr(models, name)()
    calib = torch.randn(16, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    path = _artifact(model, (calib,), "version: 1\n", tmp / name)
    import torch.ao.quantization.fx._decomposed  # as the README tells users: registers the graph's Q/DQ ops

    rows = []
    with inductor_config.patch({"freezing": True}), torch.no_grad():
        for batch in (1, 16):
            x = torch.randn(batch, 3, 224, 224)
            int8 = torch.compile(torch.export.load(str(path)).module(), dynamic=False)
            flt = torch.compile(copy.deepcopy(model), dynamic=False)  # freezing rewrites the module it compiles
            ms = _ms({"float_eager": partial(model, x), "float_compiled": partial(flt, x), "int8": partial(int8, x)})
            torch._dynamo.reset()
            rows.append({"model": name, "mode": "static", "input": f"{batch}x3x224x224", **ms})
    return rows


def _dynamic(name: str, tmp: Path) -> list[dict[str, Any]]:
    import torch

    model, vocab, seq, shapes = _dynamic_model(name)
    g = torch.Generator().manual_seed(0)
    calib = (torch.randint(2, vocab, (8, seq), generator=g), torch.ones(8, seq, dtype=torch.long))
    path = _artifact(model, calib, "version: 1\ndynamic: true\n", tmp / name)
    int8 = torch.jit.load(str(path))  # the x86 engine is torch's default here
    rows = []
    with torch.no_grad():
        for batch in shapes:
            ids, mask = torch.randint(2, vocab, (batch, seq), generator=g), torch.ones(batch, seq, dtype=torch.long)
            ms = _ms({"float_eager": partial(model, ids, mask), "int8": partial(int8, ids, mask)})
            rows.append({"model": name, "mode": "dynamic", "input": f"{batch}x{seq} tokens", "float_compiled": None, **ms})
    return rows


def _dynamic_model(name: str) -> tuple[Any, int, int, tuple[int, ...]]:
    import torch

    if name == "text":
        sys.path.insert(0, str(ROOT / "samples" / "text"))
        from model import SEQ_LEN, VOCAB, build  # type: ignore[import-not-found]

        model = build()
        model.load_state_dict(torch.load(ROOT / "samples" / "text" / "weights.pt", weights_only=True))
        return model.eval(), VOCAB, SEQ_LEN, (1, 16)
    return BertSized().eval(), 30522, 128, (1, 8, 16)


def _bert_class() -> type:
    import torch
    from torch import nn

    class _Bert(nn.Module):
        """BERT-base sizes (12 layers, d=768, 12 heads, feed-forward 3072, GELU, 30522 tokens), random weights."""

        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.tokens, self.positions = nn.Embedding(30522, 768), nn.Embedding(512, 768)
            layer = nn.TransformerEncoderLayer(768, 12, 3072, dropout=0.0, activation="gelu", batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 12, enable_nested_tensor=False)
            self.head = nn.Linear(768, 2)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            pos = torch.arange(input_ids.shape[1], device=input_ids.device)
            x = self.tokens(input_ids) + self.positions(pos).unsqueeze(0)
            return self.head(self.encoder(x, src_key_padding_mask=attention_mask == 0)[:, 0])

    return _Bert


def BertSized() -> Any:
    return _bert_class()()


def _worker(name: str) -> None:
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.getLogger("torchao").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        rows = _static(name, Path(tmp)) if name == "resnet18" else _dynamic(name, Path(tmp))
    print(json.dumps(rows))


if __name__ == "__main__":
    _worker(sys.argv[1])
