"""Int8 speed in onnxruntime: qconvert's default onnx artifact vs fp32 and vs
onnxruntime's own quantize_static output (U8S8 and S8S8 QDQ), same model, same run.

ResNet-18 and MobileNetV2 at 224x224 with random weights (speed only). Median of
several runs at batch 1 and 16; the node counts say how many compute nodes
onnxruntime ran in int8 after its QDQ fusions.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from bench import models
from qconvert.core.capture import capture
from qconvert.core.quantize import calibrate, quantize
from qconvert.recipe import recipe_from_text

BATCHES = (1, 16)
CALIB_BATCHES = 4
BUDGET_S = 12.0  # seconds of timing per model and batch size, all artifacts together


def _calib(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 3, 224, 224, generator=g) for _ in range(CALIB_BATCHES)]


def _ort_quantized(float_path: Path, out: Path, calib: list[torch.Tensor], activation_type: str) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib)

        def get_next(self):  # type: ignore[no-untyped-def]
            x = next(self.it, None)
            return None if x is None else {"x": x.numpy()}

    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(float_path), str(pre))
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=getattr(QuantType, activation_type), weight_type=QuantType.QInt8)
    return out


def run() -> None:
    import onnx

    from qconvert_onnx import OnnxTarget
    from qconvert_onnx.export import export_float_model
    from qconvert_onnx.latency import count_int8_nodes, session_ms

    target = OnnxTarget()
    print("Each row: ms (10th percentile of all runs; models timed in turn, a block of runs each per round, so other\n"
          "tenants' load and another session's spinning threads stay out of it); speed-up vs fp32 in onnxruntime.")
    print("| model / artifact | batch 1 | batch 16 | int8 / float compute nodes |")
    print("|---|---|---|---|")
    for model_name in ("resnet18", "mobilenet_v2"):
        model = getattr(models, model_name)()
        calib = _calib()
        cap = capture(model, (calib[0][:2],))
        recipe = recipe_from_text("version: 1\n")  # qconvert's defaults: per-channel sym int8 weights, uint8 activations
        stats = calibrate(cap, recipe, [(b,) for b in calib])
        options = target.parse_options({})
        qm = quantize(cap, recipe, stats, target.constraints(options), "onnx", target.placement(options))
        with tempfile.TemporaryDirectory() as d:
            paths = {"fp32": Path(d) / "float.onnx"}
            onnx.save(export_float_model(qm), paths["fp32"])
            paths["qconvert onnx (default recipe)"] = target.emit(qm, Path(d), options).path
            for act, label in (("QUInt8", "ort quantize_static U8S8"), ("QInt8", "ort quantize_static S8S8")):
                try:
                    paths[label] = _ort_quantized(paths["fp32"], Path(d) / f"ort_{act}.onnx", calib, act)
                except Exception as e:  # a peer failing is a result, not a crash of the bench
                    print(f"| {model_name} {label} | failed: {type(e).__name__}: {str(e)[:80]} | | |")
            models_ = {k: str(v) for k, v in paths.items()}
            ms = {b: session_ms(models_, {"x": np.random.default_rng(0).standard_normal((b, 3, 224, 224), np.float32)}, BUDGET_S)
                  for b in BATCHES}
            for name, path in models_.items():
                cells = [f"{ms[b][name]:.1f} ms" + ("" if name == "fp32" else f" ({ms[b]['fp32'] / ms[b][name]:.2f}x)") for b in BATCHES]
                nodes = "-" if name == "fp32" else "{} / {}".format(*count_int8_nodes(path)[:2])
                print(f"| {model_name} {name} | " + " | ".join(cells) + f" | {nodes} |", flush=True)
            peers = [k for k in models_ if k.startswith("ort ")]
            if peers:
                ours = "qconvert onnx (default recipe)"
                best = {b: min(ms[b][k] for k in peers) for b in BATCHES}
                print(f"| {model_name}: onnxruntime's best / qconvert (>1: qconvert faster) | "
                      + " | ".join(f"{best[b] / ms[b][ours]:.3f}" for b in BATCHES) + " | |", flush=True)


if __name__ == "__main__":
    run()
