"""Run benchmark sections: `python -m bench [section ...]` (default: all).

Each section is a module in this package with a ``run() -> None`` that prints
its own table. Sections import their peers lazily and say so when one is missing.
"""

from __future__ import annotations

import importlib
import sys
import time

SECTIONS: list[str] = [
    "calibration",  # issue 3: calibration overhead and memory vs onnxruntime/torchao
    "quality",  # issue 3: accuracy of every range method x bits x granularity x mode
    "real",  # issue 14: pretrained EfficientNet-Lite on real photo views, qconvert vs onnxruntime quantize_static vs NNCF
    "speed",  # issue 10: onnx int8 vs fp32 and vs onnxruntime's quantize_static
    "edge_latency",  # issue 5: tflite and tvm artifacts vs float in the same runtime, ResNet-18 batch 1
    "pytorch_target",  # issue 4: pytorch int8 artifacts vs float PyTorch (ResNet-18 static; text, BERT-base-sized dynamic)
    "scale",  # issue 20: bias correction old vs new; EfficientNet-Lite calibration, bias correction, build vs NNCF; sensitivity
    "build_time",  # issue 20: the digits six-target build, this checkout (--jobs auto and 1) vs commit 0044864, alternated
    "intarith",  # issue 19: fixed-point requantization multiplier widths on digits
    "parity_depth",  # issue 14: end-to-end vs per-layer parity of onnx/tflite artifacts at depth
]


def main(argv: list[str]) -> int:
    chosen = argv or SECTIONS
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        print(f"unknown bench section(s) {unknown}; known: {SECTIONS}", file=sys.stderr)
        return 2
    for name in chosen:
        print(f"\n## bench: {name}\n", flush=True)
        start = time.perf_counter()
        importlib.import_module(f"bench.{name}").run()
        print(f"\n({name}: {time.perf_counter() - start:.0f} s)", flush=True)
    if not chosen:
        print("no bench sections yet")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
