"""The TIDL model lint on small models built in code; findings name module paths."""

from __future__ import annotations

import torch
from qconvert_tidl.lint import lint_model
from torch import nn

from qconvert.core.capture import capture


class Block(nn.Module):
    """conv-bn -> shared relu -> (+ x, functional) -> shared relu: torchvision ResNet's pattern."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.relu(self.bn(self.conv(x))) + x)


class Trapped(nn.Module):
    """stem conv (no BN) -> Block -> head conv (last, no BN: allowed)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.block = Block()
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)))


class Clean(nn.Module):
    """conv-bn-relu -> conv (last): nothing to report."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _lint(model: nn.Module):
    model.eval()
    return lint_model(model, capture(model, (torch.randn(2, 1, 8, 8),)))


def test_reused_relu_and_functional_add_are_flagged_with_module_paths() -> None:
    torch.manual_seed(0)
    model = Trapped()
    findings = _lint(model)
    by_rule = {(f.rule, f.module) for f in findings}
    assert ("module_reused", "block.relu") in by_rule
    assert ("functional_op", "block") in by_rule
    reused = next(f for f in findings if f.rule == "module_reused")
    assert "called 2 times" in reused.message
    assert model.training is False  # left as it was


def test_conv_without_batchnorm_flagged_except_the_last() -> None:
    findings = _lint(Trapped())
    no_bn = {f.module for f in findings if f.rule == "conv_without_bn"}
    assert no_bn == {"stem"}


def test_wide_weight_range_after_batchnorm_folding() -> None:
    torch.manual_seed(0)
    model = Clean()
    conv, bn = model.body[0], model.body[1]
    assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
    with torch.no_grad():
        conv.weight.uniform_(-0.1, 0.1)
        bn.weight.fill_(1.0)
        bn.weight[2] = 100.0  # BN scale blows one output channel up after folding
    findings = _lint(model)
    assert [(f.rule, f.module) for f in findings] == [("wide_weight_range", "body.0")]


def test_clean_model_has_no_findings() -> None:
    torch.manual_seed(0)
    assert _lint(Clean()) == ()
