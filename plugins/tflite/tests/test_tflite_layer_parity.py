"""Per-layer parity in LiteRT on a deep network: every layer of a healthy artifact within
tolerance, and one corrupted activation scale in the flatbuffer fails the build (exit 3)
naming the layer. Real interpreter runs."""

from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from qconvert_tflite.details import TfliteDetails

from qconvert.errors import EXIT_GATE_FAILED, GateFailedError
from qconvert.targets.base import Artifact, TargetOptions
from qconvert.targets.registry import TargetRegistry
from qconvert.testing.deep import build_deep, deep_data
from qconvert.verify.manifest import read_artifact

pytestmark = pytest.mark.slow  # two litert-torch conversions of a 12-block network (~1 min on 2 cores)


def _tflite_target():
    target = TargetRegistry().get("tflite")
    av = target.available()
    if not av.ok:
        pytest.skip(av.reason)
    return target


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return deep_data(tmp_path_factory.mktemp("deep_tflite"))


def corrupt_scale(path: Path, index: int) -> None:
    """Multiply the quantization scale of tensor ``index`` by 1.5 in the flatbuffer."""
    from ai_edge_litert import schema_py_generated as fb

    buf = path.read_bytes()
    model = fb.ModelT.InitFromPackedBuf(buf, 0)
    q = model.subgraphs[0].tensors[index].quantization
    q.scale = [float(s) * 1.5 for s in q.scale]
    builder = flatbuffers.Builder(len(buf) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))


def test_deep_net_per_layer_and_a_corrupted_scale(data: dict[str, Path]) -> None:
    healthy = _tflite_target()
    result = build_deep(data, healthy, "healthy")
    assert not result.gate_failures, result.gate_failures
    assert result.report is not None
    lp = result.report.targets["tflite"].layer_parity
    assert lp is not None
    compared = [r for r in lp.layers if r.status != "not_exposed"]
    assert len(compared) >= 36 and all(r.status == "ok" for r in compared), lp.first_divergence
    assert max(r.max_steps or 0.0 for r in compared) <= 1.0

    # the interpreter that keeps its tensors computes what run() computes
    from qconvert_tflite.intermediates import run_with_intermediates

    artifact = read_artifact(data["dir"] / "healthy" / "tflite", TfliteDetails)
    x = np.load(data["eval"])["x"][:4]
    mapping = TfliteDetails.of(artifact).quantized_tensors
    assert mapping is not None
    run = run_with_intermediates(artifact.path, [x], mapping)
    np.testing.assert_array_equal(run.outputs[0], healthy.run(artifact, {"x": x})[0])

    victim_node = list(mapping)[len(mapping) // 2]

    class Corrupting(type(healthy)):  # type: ignore[misc]  # the installed plugin's class, found at run time
        def emit(self, qmodel: object, out_dir: Path, options: TargetOptions) -> Artifact:
            art = super().emit(qmodel, out_dir, options)
            slots = TfliteDetails.of(art).quantized_tensors
            assert slots is not None
            corrupt_scale(art.path, slots[victim_node].index)
            return art

    bad = build_deep(data, Corrupting(), "bad")
    assert bad.gate_failures and GateFailedError(list(bad.gate_failures)).exit_code == EXIT_GATE_FAILED
    assert bad.report is not None
    bad_lp = bad.report.targets["tflite"].layer_parity
    first = bad_lp.first_divergence if bad_lp is not None else None
    assert first is not None and first.node == victim_node and first.status == "grid"
    assert any(victim_node in f and "per-layer parity" in f for f in bad.gate_failures)
