"""TensorRT's float logits are compared as one more layer: the simulation of the float tail fed the
runtime's last quantized tensor. They used to be gated only end to end, against a depth bound that
healthy deep depthwise nets exceeded (the zoo's MobileNetV1 13.8 > 10.6 steps, MobileNetV2 32.6 > 14.6)
while every quantized tensor was within 1 step. Real onnxruntime runs of the TensorRT ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from qconvert_tensorrt import TensorRTTarget

from qconvert.errors import EXIT_GATE_FAILED, GateFailedError
from qconvert.targets.base import Artifact, TargetOptions
from qconvert.testing.deep import build_deep, deep_data


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return deep_data(tmp_path_factory.mktemp("deep"))


def _output_bias(model: onnx.ModelProto) -> str:
    """The float bias of the layer that writes the graph's output (after its last quantized input)."""
    inits = {i.name for i in model.graph.initializer}
    out = model.graph.output[0].name
    node = next(n for n in model.graph.node if out in n.output)
    assert node.op_type in ("Conv", "Gemm") and len(node.input) == 3 and node.input[2] in inits, node
    return node.input[2]


class _WrongLogits(TensorRTTarget):
    """The tensorrt target with its float output layer's bias shifted after emitting."""

    def emit(self, qmodel: object, out_dir: Path, options: TargetOptions) -> Artifact:
        artifact = super().emit(qmodel, out_dir, options)  # type: ignore[arg-type]  # the test passes what the core passes
        model = onnx.load(artifact.path)
        name = _output_bias(model)
        init = next(i for i in model.graph.initializer if i.name == name)
        bias = numpy_helper.to_array(init)
        init.CopyFrom(numpy_helper.from_array((bias + 10 * np.abs(bias).max() + 1).astype(np.float32), name))
        onnx.save(model, artifact.path)
        return artifact


def test_float_logits_are_compared_fed_the_runtimes_last_tensor(data: dict[str, Path]) -> None:
    result = build_deep(data, TensorRTTarget(), "healthy")
    assert result.report is not None
    lp = result.report.targets["tensorrt"].layer_parity
    assert lp is not None and lp.outputs_covered
    out = lp.layers[-1]
    assert out.node == "output_0" and out.status == "ok" and out.max_steps is not None and out.max_steps < 0.01, out
    checks = [c for c in result.report.gates.checks if c.target == "tensorrt"]
    assert [c.metric for c in checks if "parity" in c.metric] == ["layer_parity_lsb"], checks
    assert not result.gate_failures, result.gate_failures


def test_wrong_float_logits_fail_the_build_naming_the_output(data: dict[str, Path]) -> None:
    result = build_deep(data, _WrongLogits(), "bad-logits")
    assert result.gate_failures
    assert GateFailedError(list(result.gate_failures)).exit_code == EXIT_GATE_FAILED
    assert result.report is not None
    lp = result.report.targets["tensorrt"].layer_parity
    first = lp.first_divergence if lp is not None else None
    assert first is not None and first.node == "output_0" and first.status == "diverged", first
    assert any("output_0" in f for f in result.gate_failures), result.gate_failures
