"""The placement hook: the default is the original placement, a target's placement moves the Q/DQ,
and calibration observes every tensor a placement may pick, without changing the default statistics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import qconvert.core.quantize as quantize_module
from qconvert.core.capture import capture
from qconvert.core.placement import Placement
from qconvert.core.quantize import calibrate, quantize
from qconvert.errors import StatsError
from qconvert.recipe.model import QScheme, Recipe

Q = torch.ops.quantized_decomposed.quantize_per_tensor.default
CONSUMER = Placement(outputs=False, elementwise="residual_add", pool_and_concat=False, int32_bias=False, quantize_at="consumer")


class Net(nn.Module):
    """x -> conv-relu -> conv -> (+ x) -> relu -> avgpool -> flatten -> linear"""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.c2(torch.relu(self.c1(x))) + x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


@pytest.fixture(scope="module")
def setup() -> tuple:
    torch.manual_seed(0)
    x = torch.randn(32, 4, 6, 6)
    recipe = Recipe(activations=QScheme(mode="sym"))
    cap = capture(Net().eval(), (x[:2],))
    return cap, recipe, x, calibrate(cap, recipe, [(x,)])


def _quantized_tensors(gm: torch.fx.GraphModule) -> set[str]:
    return {str(n.args[0]) for n in gm.graph.nodes if n.target == Q}


def test_default_placement_quantizes_outputs_and_int32_biases(setup: tuple) -> None:
    cap, recipe, _, stats = setup
    qm = quantize(cap, recipe, stats)
    # every fused group's output (conv2's too, as an add input), the pool's, the flatten sharing it, the logits
    assert _quantized_tensors(qm.graph) == {"x", "relu", "conv2d_1", "relu_1", "adaptive_avg_pool2d", "flatten", "linear"}
    assert any(n.args[-1] == torch.int32 for n in qm.graph.graph.nodes if "dequantize" in str(n.target))
    assert qm.output_scales()[0] is not None and qm.parity_steps() == qm.output_scales()


def test_consumer_placement_quantizes_only_what_int8_kernels_read(setup: tuple) -> None:
    cap, recipe, _, stats = setup
    qm = quantize(cap, recipe, stats, placement=CONSUMER)
    # conv1 and the shortcut read x, conv2 reads relu, the linear reads flatten; the add fuses into conv2
    assert _quantized_tensors(qm.graph) == {"x", "relu", "flatten"}
    assert not any(n.args[-1] == torch.int32 for n in qm.graph.graph.nodes if "dequantize" in str(n.target))
    # the float output is measured in the step it would have as a symmetric int8 activation
    s = stats.tensors["linear"]
    assert qm.output_scales() == [None]
    assert qm.parity_steps()[0] == pytest.approx(max(-s.min, s.max) / 127, rel=1e-6)


def test_calibration_adds_observers_without_changing_the_default_statistics(setup: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    cap, recipe, x, stats = setup
    monkeypatch.setattr(quantize_module, "observe_consumed_tensors", lambda *a: 0)
    plain = calibrate(cap, recipe, [(x,)])
    assert set(stats.tensors) - set(plain.tensors) == {"flatten"}  # shared with the pool by default
    for key, s in plain.tensors.items():
        t = stats.tensors[key]
        assert (t.min, t.max, t.count, t.sum, t.ema_min) == (s.min, s.max, s.count, s.sum, s.ema_min)
        assert (t.hist == s.hist).all()
    with pytest.raises(StatsError, match="no entry for tensor 'flatten'"):
        quantize(cap, recipe, plain, placement=CONSUMER)
