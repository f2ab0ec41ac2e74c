"""The module ``qconvert.qat.prepare`` returns: train it in your own loop, then ``qconvert.qat.save`` it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.fx import GraphModule

from qconvert.qat.convbn import ConvBnQAT
from qconvert.qat.fake_quant import FakeQuant
from qconvert.recipe.model import Recipe

__all__ = ["Origin", "QATModel"]


@dataclass(frozen=True)
class Origin:
    """Where the training graph came from: what a checkpoint needs to rebuild and check it."""

    recipe: Recipe
    #: The captured float graph (BatchNorm unfolded); its state names are the float model's.
    float_graph: GraphModule
    input_names: tuple[str, ...]
    example_inputs: tuple[torch.Tensor, ...]
    fingerprint: str
    #: The float model ``prepare`` was given, as captured: what a build compares with (the
    #: "float" row of its report), so the drop it shows is the drop from the model before QAT.
    reference: GraphModule


class QATModel(nn.Module):
    """A trainable, fake-quantized copy of the captured model.

    ``train()``/``eval()`` work as usual: in eval mode ranges and BatchNorm statistics
    stay still and the forward pass is the deployed model's arithmetic (up to the int32
    rounding of biases). It wraps in ``DistributedDataParallel`` like any module. The
    caller's model is never modified.
    """

    steps: torch.Tensor

    def __init__(self, graph: GraphModule, origin: Origin) -> None:
        super().__init__()
        self.graph = graph
        # a tuple keeps the float template out of this module's parameters and state
        self._origin = (origin,)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @property
    def origin(self) -> Origin:
        return self._origin[0]

    @property
    def recipe(self) -> Recipe:
        return self.origin.recipe

    def fake_quants(self) -> list[FakeQuant]:
        seen: dict[int, FakeQuant] = {}
        for m in self.graph.modules():
            if isinstance(m, FakeQuant):
                seen.setdefault(id(m), m)
        return list(seen.values())

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.steps += 1
        self._set_phase(int(self.steps))
        return self.graph(*args)

    def _set_phase(self, step: int) -> None:
        qat = self.recipe.qat
        bn_frozen = qat.freeze_bn_after is not None and step > qat.freeze_bn_after
        observing = qat.freeze_ranges_after is None or step <= qat.freeze_ranges_after
        for m in self.graph.modules():
            if isinstance(m, ConvBnQAT):
                m.bn_frozen = bn_frozen
            elif isinstance(m, FakeQuant):
                m.observing = observing

    def learned_ranges(self) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """(activations, weights): the (lo, hi) a build turns into this model's grids.

        Weights whose range is their current min/max are left out: a build computes
        exactly that from the folded weights.
        """
        acts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        weights: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for fq in self.fake_quants():
            if fq.spec.role == "weight":
                if fq.learn != "minmax":
                    weights[fq.spec.key] = fq.deployed_range()
            else:
                acts[fq.spec.key] = fq.deployed_range()
        return acts, weights

    def float_state(self) -> dict[str, torch.Tensor]:
        """The trained float model's parameters and buffers, under the captured graph's names."""
        names = set(self.origin.float_graph.state_dict())
        return {k: v.detach().clone() for k, v in self.graph.state_dict().items() if k in names}
