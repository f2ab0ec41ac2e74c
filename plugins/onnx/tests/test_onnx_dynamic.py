"""Dynamic quantization in ONNX: the form onnxruntime runs in int8, checked on the text sample."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from qconvert_onnx import OnnxOptions, OnnxTarget

from qconvert.core.capture import capture
from qconvert.core.quantize import calibrate, quantize
from qconvert.io.inputs import input_names_for
from qconvert.io.model import load_model
from qconvert.recipe import load_recipe, recipe_from_text

TEXT = Path(__file__).resolve().parents[3] / "samples" / "text"
TARGET = OnnxTarget()


@pytest.fixture(scope="module")
def text_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    recipe = load_recipe(TEXT / "recipe.yaml")
    model = load_model(f"{TEXT / 'model.py'}:build", str(TEXT / "weights.pt"))
    calib = np.load(TEXT / "calib.npz")
    inputs = tuple(torch.from_numpy(calib[k][:64]) for k in input_names_for(model, TEXT / "calib.npz"))
    cap = capture(model, tuple(t[:2] for t in inputs))
    options = OnnxOptions()
    qm = quantize(cap, recipe, calibrate(cap, recipe, [inputs]), TARGET.constraints(options), TARGET.name, TARGET.placement(options))
    art = TARGET.emit(qm, tmp_path_factory.mktemp("onnx_text"), options)
    return model, qm, art, dict(np.load(TEXT / "eval.npz"))


def test_dynamic_linears_are_integer_matmuls_onnxruntime_fuses(text_onnx: tuple, tmp_path: Path) -> None:
    _, _, art, _ = text_onnx
    ops = Counter(n.op_type for n in onnx.load(art.path).graph.node)
    # 2 layers x (in-projection, out-projection, 2 feed-forward) + head
    assert ops["DynamicQuantizeLinear"] == ops["MatMulInteger"] == 9
    assert ops["QuantizeLinear"] == 0  # nothing static
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(art.path), so, providers=["CPUExecutionProvider"])
    assert Counter(n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node)["DynamicQuantizeMatMul"] == 9


def test_embedding_rows_are_int8(text_onnx: tuple) -> None:
    _, _, art, _ = text_onnx
    g = onnx.load(art.path).graph
    tables = [i for i in g.initializer if i.data_type == onnx.TensorProto.INT8 and list(i.dims) == [1024, 64]]
    assert len(tables) == 1
    dq = [n for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] == tables[0].name]
    assert len(dq) == 1 and any(n.op_type == "Gather" and dq[0].output[0] in n.input for n in g.node)


def test_onnxruntime_keeps_accuracy_within_a_point_and_matches_the_simulation(text_onnx: tuple) -> None:
    model, qm, art, data = text_onnx
    feed = {k: data[k] for k in qm.input_names}
    (out,) = TARGET.run(art, feed)
    tensors = [torch.from_numpy(data[k]) for k in qm.input_names]
    with torch.no_grad():
        ref, sim = model(*tensors).numpy(), qm.graph(*tensors).numpy()

    def acc(logits: np.ndarray) -> float:
        return 100.0 * float(np.mean(logits.argmax(1) == data["y"]))

    assert abs(acc(ref) - acc(out)) <= 1.0
    (step,) = qm.parity_steps()
    assert step is not None and np.abs(out - sim).max() / step <= TARGET.parity_tolerance_lsb
    assert not np.array_equal(out, ref)


def test_lstm_stays_float_with_a_warning_naming_it() -> None:
    class Tagger(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn, self.fc = torch.nn.LSTM(4, 6, batch_first=True), torch.nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.rnn(x)[0][:, -1])

    x = torch.randn(8, 5, 4)
    cap = capture(Tagger().eval(), (x[:2],))
    recipe = recipe_from_text("dynamic: true\n")
    qm = quantize(cap, recipe, calibrate(cap, recipe, [(x,)]), TARGET.constraints(OnnxOptions()), TARGET.name)
    assert any("layer 'rnn' (lstm) stays float" in w for w in qm.warnings)
    lstm = next(n for n in qm.graph.graph.nodes if n.target == torch.ops.aten.lstm.input)
    assert not any(str(getattr(p, "target", "")).startswith("quantized_decomposed") for p in lstm.args[2])
    assert sum(tq.dynamic for tq in qm.decisions.values()) == 1  # the head is dynamic
