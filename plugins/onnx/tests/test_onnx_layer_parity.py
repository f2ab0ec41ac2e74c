"""Per-layer parity in onnxruntime on a deep network: healthy artifacts pass, one corrupted scale
or one dropped Q/DQ pair fails the build (exit 3) naming the layer. Real onnxruntime runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from qconvert_onnx import OnnxTarget
from qconvert_onnx.intermediates import expose
from qconvert_onnx.latency import count_int8_nodes

from qconvert.errors import EXIT_GATE_FAILED, GateFailedError
from qconvert.pipeline import BuildResult
from qconvert.targets.base import Artifact, TargetOptions
from qconvert.testing.deep import BLOCKS, build_deep, deep_data


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return deep_data(tmp_path_factory.mktemp("deep"))


def _build(data: dict[str, Path], target: OnnxTarget, out: str) -> BuildResult:
    return build_deep(data, target, out)


def _consumers(model: onnx.ModelProto, name: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if name in n.input]


def _middle_pair(model: onnx.ModelProto) -> tuple[onnx.NodeProto, onnx.NodeProto]:
    """A QuantizeLinear -> DequantizeLinear pair halfway through the network whose DQ feeds a Conv."""
    pairs = []
    for q in (n for n in model.graph.node if n.op_type == "QuantizeLinear"):
        dqs = [c for c in _consumers(model, q.output[0]) if c.op_type == "DequantizeLinear"]
        if len(dqs) == 1 and any(c.op_type == "Conv" for c in _consumers(model, dqs[0].output[0])):
            pairs.append((q, dqs[0]))
    return pairs[len(pairs) // 2]


def corrupt_scale(path: Path, side: str) -> str:
    """Give one Q (or one DQ) its own scale, 1.5x the right one; returns the QuantizeLinear's output."""
    model = onnx.load(path)
    q, dq = _middle_pair(model)
    node = q if side == "quantize" else dq
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    consts |= {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node if n.op_type == "Constant"}
    bad = f"{node.name}_corrupted_scale"
    model.graph.initializer.append(numpy_helper.from_array((consts[node.input[1]] * 1.5).astype(np.float32), bad))
    node.input[1] = bad
    onnx.save(model, path)
    return q.output[0]


def drop_pair(path: Path) -> str:
    """Remove one Q -> DQ pair: the DQ's consumers read the float tensor; returns the Q's output."""
    model = onnx.load(path)
    q, dq = _middle_pair(model)
    for c in _consumers(model, dq.output[0]):
        for i, name in enumerate(c.input):
            if name == dq.output[0]:
                c.input[i] = q.input[0]
    model.graph.node.remove(q)
    model.graph.node.remove(dq)
    onnx.save(model, path)
    return q.output[0]


class _Corrupting(OnnxTarget):
    """The onnx target with one defect put into model.onnx after emitting it."""

    def __init__(self, defect: str) -> None:
        self.defect = defect
        self.tensor = ""

    def emit(self, qmodel: object, out_dir: Path, options: TargetOptions) -> Artifact:
        artifact = super().emit(qmodel, out_dir, options)  # type: ignore[arg-type]  # the options it was given
        self.tensor = drop_pair(artifact.path) if self.defect == "drop" else corrupt_scale(artifact.path, self.defect)
        return artifact


def test_deep_net_passes_per_layer_within_one_step(data: dict[str, Path]) -> None:
    """End to end this network is 4 output steps from the simulation here (the old 1-step gate failed it);
    every layer fed the runtime's inputs is within 1 step, and the gate is per layer."""
    result = _build(data, OnnxTarget(), "healthy")
    assert not result.gate_failures, result.gate_failures
    assert result.report is not None
    lp = result.report.targets["onnx"].layer_parity
    assert lp is not None and lp.depth >= 36 and lp.compared == len(lp.layers) >= 39
    assert all(r.status == "ok" and r.max_steps is not None and r.max_steps <= 1.0 for r in lp.layers), lp.first_divergence
    # the integer kernels do round differently: some layers are one step off somewhere
    assert any(r.max_steps == 1.0 for r in lp.layers)
    checks = {c.metric: c for c in result.report.gates.checks}
    assert checks["layer_parity_lsb"].passed and checks["layer_parity_lsb"].limit == 1.0
    report = json.loads((data["dir"] / "healthy" / "report.json").read_text())
    assert report["targets"]["onnx"]["layer_parity"]["first_divergence"] is None


@pytest.mark.parametrize("defect", ["quantize", pytest.param("dequantize", marks=pytest.mark.slow), "drop"])
def test_one_defect_fails_the_build_naming_the_layer(data: dict[str, Path], defect: str) -> None:
    target = _Corrupting(defect)
    result = _build(data, target, f"bad-{defect}")
    assert result.gate_failures
    assert GateFailedError(list(result.gate_failures)).exit_code == EXIT_GATE_FAILED == 3
    assert result.report is not None
    lp = result.report.targets["onnx"].layer_parity
    first = lp.first_divergence if lp is not None else None
    assert first is not None
    line = next(f for f in result.gate_failures if "per-layer parity" in f)
    assert first.node in line and first.op in line
    expected = {"quantize": "grid", "dequantize": "diverged", "drop": "missing"}[defect]
    assert first.status == expected, first
    if defect != "dequantize":  # the defective tensor itself is the first divergence
        assert first.runtime_tensor in (target.tensor, None)
    else:  # the layer reading the corrupted dequantize is many steps off
        assert first.max_steps is not None and first.max_steps > 3


def test_exposing_quantized_tensors_keeps_onnxruntime_fusions(data: dict[str, Path]) -> None:
    path = data["dir"] / "healthy" / "onnx" / "model.onnx"
    if not path.exists():
        _build(data, OnnxTarget(), "healthy")
    model = onnx.load(path)
    names = [n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    plain = count_int8_nodes(model.SerializeToString())
    exposed = count_int8_nodes(expose(model, names).SerializeToString())
    assert plain == exposed and plain[0] > 2 * BLOCKS
