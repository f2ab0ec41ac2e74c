"""Dynamic quantization in the core: the recipe decides per layer, the policy asks the target what
it can run dynamically, the quantizer emits torchao's dynamic form; static recipes are unchanged."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn

from qconvert.core.capture import capture
from qconvert.core.constraints import QuantConstraints
from qconvert.core.quantize import calibrate, quantize
from qconvert.recipe import recipe_from_text

qd = torch.ops.quantized_decomposed
ALL = QuantConstraints(dynamic_ops=frozenset({"linear", "lstm", "gru", "embedding"}))


class Net(nn.Module):
    """ids -> embedding -> lstm -> linear(fc1) -> relu -> linear(fc2); x -> conv -> mean, added to fc2"""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.rnn = nn.Embedding(50, 8), nn.LSTM(8, 8, batch_first=True)
        self.fc1, self.fc2, self.conv = nn.Linear(8, 8), nn.Linear(8, 3), nn.Conv1d(3, 3, 1)

    def forward(self, ids: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.emb(ids))
        return self.fc2(torch.relu(self.fc1(h[:, -1]))) + self.conv(x).mean(-1)


@pytest.fixture(scope="module")
def setup() -> tuple:
    torch.manual_seed(0)
    ids, x = torch.randint(0, 50, (16, 5)), torch.randn(16, 3, 4)
    cap = capture(Net().eval(), (ids[:2], x[:2]))
    return cap, (ids, x), calibrate(cap, recipe_from_text("version: 1\n"), [(ids, x)])


def _ops(gm: torch.fx.GraphModule) -> Counter:
    return Counter(n.target for n in gm.graph.nodes if n.op == "call_function")


def test_dynamic_linear_input_is_quantized_per_batch_and_weights_are_int8(setup: tuple) -> None:
    cap, _, stats = setup
    qm = quantize(cap, recipe_from_text("dynamic: true\n"), stats, ALL, "t")
    ops = _ops(qm.graph)
    assert ops[qd.choose_qparams.tensor] == ops[qd.quantize_per_tensor.tensor] == 2  # fc1 and fc2
    # emb, two LSTM matrices, fc1, fc2: int8 weights behind a per-channel dequantize
    assert ops[qd.dequantize_per_channel.default] == 5
    assert ops[qd.quantize_per_tensor.default] == 0  # nothing static
    dynamic = {k: tq for k, tq in qm.decisions.items() if tq.dynamic}
    assert len(dynamic) == 2 and {tq.scheme.mode for tq in dynamic.values()} == {"asym_u"}
    assert qm.output_scales() == [None]  # the output stays float
    assert any("'conv' (conv)" in w and "stays float" in w for w in qm.warnings)


def test_simulation_stays_close_to_float(setup: tuple) -> None:
    cap, data, stats = setup
    qm = quantize(cap, recipe_from_text("dynamic: true\n"), stats, ALL, "t")
    with torch.no_grad():
        ref, sim = cap.graph(*data), qm.graph(*data)
    assert torch.nn.functional.cosine_similarity(ref.flatten(), sim.flatten(), dim=0) > 0.999
    assert not torch.equal(ref, sim)


def test_dynamic_activation_bits_follow_the_target(setup: tuple) -> None:
    cap, _, stats = setup
    seven = QuantConstraints(dynamic_ops=frozenset({"linear"}), dynamic_activation_bits=7)
    qm = quantize(cap, recipe_from_text("dynamic: true\n"), stats, seven, "t")
    chooses = [n for n in qm.graph.graph.nodes if n.target == qd.choose_qparams.tensor]
    assert {(n.args[1], n.args[2]) for n in chooses} == {(0, 127)}
    # lstm and embedding are not among this target's dynamic ops: float, and named
    assert any("'rnn' (lstm) stays float" in w for w in qm.warnings)
    assert any("'emb' (embedding) stays float" in w for w in qm.warnings)


def test_per_layer_override_exact_name_beats_glob(setup: tuple) -> None:
    cap, _, stats = setup
    text = "overrides:\n  - {match: 'fc*', dynamic: true}\n  - {match: fc2, dynamic: false}\n"
    qm = quantize(cap, recipe_from_text(text), stats, ALL, "t")
    dynamic_modules = {tq.module for tq in qm.decisions.values() if tq.dynamic}
    assert dynamic_modules == {"fc1"}
    # fc2 and the conv are static: their inputs have calibrated scales
    assert _ops(qm.graph)[qd.quantize_per_tensor.default] > 0


def test_target_without_dynamic_ops_keeps_dynamic_layers_float(setup: tuple) -> None:
    cap, data, stats = setup
    qm = quantize(cap, recipe_from_text("dynamic: true\n"), stats, QuantConstraints(), "plain")
    assert not any(str(t).startswith("quantized_decomposed") for t in _ops(qm.graph))
    assert len([w for w in qm.warnings if "stays float" in w]) == 5  # emb, rnn, fc1, fc2, conv
    with torch.no_grad():
        assert torch.equal(qm.graph(*data), cap.graph(*data))


def test_static_recipe_is_unchanged_by_the_dynamic_field(setup: tuple) -> None:
    cap, data, stats = setup
    default = quantize(cap, recipe_from_text("version: 1\n"), stats, ALL, "t")
    explicit = quantize(cap, recipe_from_text("dynamic: false\n"), stats, ALL, "t")
    assert _ops(default.graph) == _ops(explicit.graph)
    assert not any(tq.dynamic for tq in default.decisions.values())
    with torch.no_grad():
        assert torch.equal(default.graph(*data), explicit.graph(*data))


def test_calibration_observes_statically_even_for_dynamic_recipes(setup: tuple) -> None:
    cap, data, stats = setup
    dyn = calibrate(cap, recipe_from_text("dynamic: true\n"), [data])
    assert set(dyn.tensors) == set(stats.tensors)
