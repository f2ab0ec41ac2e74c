"""Fixtures of the tensorrt plugin's tests: the placement patterns quantized once, one CLI build of digits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from qconvert_onnx.export import export_onnx_model
from torch import nn
from trt_patterns import PATTERNS, Quantized, quantize_for_tensorrt

from qconvert.cli import main
from qconvert.testing import digits_build_args


@pytest.fixture(scope="session")
def patterns() -> dict[str, Quantized]:
    out: dict[str, Quantized] = {}
    for name, (cls, shape) in PATTERNS.items():
        torch.manual_seed(0)
        model = cls().eval()
        for m in model.modules():  # non-trivial BatchNorm statistics, so folding matters
            if isinstance(m, nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        x = torch.randn(64, *shape, generator=torch.Generator().manual_seed(1))
        qm = quantize_for_tensorrt(model, x)
        out[name] = Quantized(model, qm, export_onnx_model(qm), x)
    return out


@pytest.fixture(scope="session")
def tensorrt_build(digits: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real CLI build of the digits sample for the tensorrt target."""
    out = tmp_path_factory.mktemp("trt") / "OUT"
    result = CliRunner().invoke(main, digits_build_args(digits, out, "tensorrt"))
    assert result.exit_code == 0, result.output
    return out
