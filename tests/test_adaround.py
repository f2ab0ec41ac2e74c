"""Learned weight rounding (recipe ``weight_rounding: adaround``): each layer's integer weights
are learned so its output stays close to float; the integers stay on the layer's grid, only
rounding direction changes, and the network's output moves closer to float than with
round-to-nearest (4-bit weights, where rounding matters most)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.fx import GraphModule

from qconvert.core.adaround import learn_rounding
from qconvert.core.capture import Captured, capture
from qconvert.core.quantize import calibrate, quantize
from qconvert.core.stats import StatsSet
from qconvert.recipe import recipe_from_text

RECIPE = "weights: {bits: 4, mode: sym, granularity: per_channel}\n"


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU6(),
                         nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU(), nn.Conv2d(16, 8, 1),
                         nn.Flatten(), nn.Linear(8 * 8 * 8, 10)).eval()


def _sqnr(ref: torch.Tensor, out: torch.Tensor) -> float:
    return float(10 * torch.log10((ref ** 2).sum() / ((ref - out) ** 2).sum()))


def _int_weights(gm: torch.fx.GraphModule) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in gm.state_dict().items() if not v.is_floating_point() and v.dtype == torch.int8}


def _nearest_setup() -> tuple[nn.Module, torch.Tensor, Captured, Callable[[], list[tuple[torch.Tensor]]], StatsSet, GraphModule]:
    """The test net on 96 random inputs: model, inputs, capture, batches, statistics and its nearest-rounded graph."""
    model = _net()
    x = torch.randn(96, 3, 8, 8)
    cap = capture(model, (x[:2],))
    recipe = recipe_from_text(RECIPE)
    def batches() -> list[tuple[torch.Tensor]]:
        return [(x[i:i + 32],) for i in range(0, len(x), 32)]

    stats = calibrate(cap, recipe, batches())
    return model, x, cap, batches, stats, quantize(cap, recipe, stats).graph


def test_adaround_learns_rounding_that_beats_nearest() -> None:
    model, _, cap, batches, stats, nearest = _nearest_setup()
    learned_recipe = RECIPE + "weight_rounding: adaround\nadaround_iterations: 150\nadaround_target: layer\n"
    learned = quantize(cap, recipe_from_text(learned_recipe), stats,
                       calibration_batches=batches).graph
    xe = torch.randn(64, 3, 8, 8)
    with torch.no_grad():
        ref = model(xe)
        assert _sqnr(ref, learned(xe)) > _sqnr(ref, nearest(xe)) + 0.3
    before, after = _int_weights(nearest), _int_weights(learned)
    assert before.keys() == after.keys() and before
    changed = 0
    for k in before:
        diff = (after[k].int() - before[k].int()).abs()
        assert int(diff.max()) <= 1  # only the direction of rounding is learned
        assert int(after[k].min()) >= -7 and int(after[k].max()) <= 7  # on the 4-bit narrow grid
        changed += int((diff > 0).sum())
    assert changed > 0


def test_adaround_report_per_layer() -> None:
    model = _net()
    x = torch.randn(32, 3, 8, 8)
    cap = capture(model, (x[:2],))
    recipe = recipe_from_text(RECIPE)
    batches = lambda: [(x,)]
    qgm = quantize(cap, recipe, calibrate(cap, recipe, batches())).graph
    rows = learn_rounding(cap.graph, qgm, batches, samples=32, iterations=200)
    assert [r.layer for r in rows] == ["conv2d", "conv2d_1", "conv2d_2", "linear"]
    assert all(0.0 <= r.flipped < 0.5 and r.error_learned <= r.error_nearest * 1.05 for r in rows)


def test_adaround_network_target_fits_the_float_network() -> None:
    """adaround_target: network (the default) reconstructs the float network's own values at each layer, so on the
    samples it learns from, the quantized network (activations quantized too) ends closer to float than with
    nearest rounding or with the layer-by-layer target; integers stay on the grid, one step from nearest at most."""
    model, x, cap, batches, stats, nearest = _nearest_setup()
    graphs = {t: quantize(cap, recipe_from_text(RECIPE + f"weight_rounding: adaround\nadaround_iterations: 300\nadaround_target: {t}\n"),
                          stats, calibration_batches=batches).graph for t in ("network", "layer")}
    with torch.no_grad():
        ref = model(x)
        assert _sqnr(ref, graphs["network"](x)) > max(_sqnr(ref, nearest(x)), _sqnr(ref, graphs["layer"](x))) + 0.5
    before, after = _int_weights(nearest), _int_weights(graphs["network"])
    for k in before:
        assert int((after[k].int() - before[k].int()).abs().max()) <= 1


def test_conv_windows_are_the_full_maps_windows() -> None:
    """Steps on a window of a strided, padded conv: the window's input through the conv gives exactly the
    full output's window, so the target (the float network's full map) lines up with what is learned."""
    from qconvert.core.adaround import _Layer, _qweight, _Windows
    from qconvert.core.graph import OpKind, op_kind

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.ReLU6()).eval()
    x = torch.randn(4, 3, 80, 70)
    cap = capture(model, (x[:2],))
    recipe = recipe_from_text(RECIPE)
    qgm = quantize(cap, recipe, calibrate(cap, recipe, [(x,)])).graph
    node = next(n for n in qgm.graph.nodes if op_kind(n) == OpKind.WEIGHTED)
    qw = _qweight(qgm, node)
    assert qw is not None
    layer = _Layer(qgm, node, model[0].weight.detach(), qw)
    ref = layer.act(layer.run(x, layer.w.float()))
    windows = _Windows(layer, x, ref, batch=2, size=16, generator=torch.Generator().manual_seed(1))
    assert windows.conv is not None
    for _ in range(5):
        _, target, run = windows.draw()
        assert target.shape[2:] == (16, 16)
        torch.testing.assert_close(run(layer.w.float()), target, atol=1e-5, rtol=1e-5)


def test_weights_only_learns_what_near_float_activations_learn() -> None:
    """Weight-only graphs have no activation Q/DQ between a conv and a conv it feeds directly (a
    projection into the next expansion): each layer must still learn on its input as rounded
    upstream, so weights only and 16-bit activations (almost float) learn the same integers."""
    torch.manual_seed(0)
    def block(cin: int, cout: int, k: int, act: bool) -> list[nn.Module]:
        bn = nn.BatchNorm2d(cout)
        bn.running_mean, bn.running_var = torch.rand(cout) - 0.5, torch.rand(cout) * 1.5 + 0.5
        return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), bn] + ([nn.ReLU6()] if act else [])
    model = nn.Sequential(*block(3, 16, 3, True), *block(16, 8, 1, False), *block(8, 24, 1, True), *block(24, 8, 1, False),
                          *block(8, 16, 1, False), nn.Flatten(), nn.Linear(16 * 8 * 8, 10)).eval()
    x = torch.randn(64, 3, 8, 8)
    cap = capture(model, (x[:2],))
    batches = lambda: [(x[i:i + 32],) for i in range(0, len(x), 32)]
    learned = {}
    for name, acts in (("weights only", "quantize_only: weights\n"), ("16-bit activations", "activations: {bits: 16, mode: sym}\n")):
        recipe = recipe_from_text(RECIPE + acts + "weight_rounding: adaround\nadaround_iterations: 60\nadaround_samples: 32\n")
        learned[name] = _int_weights(quantize(cap, recipe, calibrate(cap, recipe, batches()), calibration_batches=batches).graph)
    a, b = learned["weights only"], learned["16-bit activations"]
    assert a.keys() == b.keys() and len(a) == 6
    for k in a:
        assert float((a[k] != b[k]).double().mean()) < 0.01, k
