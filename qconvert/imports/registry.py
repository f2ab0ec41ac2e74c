"""Which tool quantized a model: a small detection registry.

Each entry names a module that provides ``detect(model) -> bool`` and
``open_source(model) -> SourceModel``. Detection looks at module classes only, so a tool
is imported only when a model of that tool is given (and is then installed, as the
model was built with it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from qconvert.imports.source import SourceModel

__all__ = ["IMPORTERS", "Importer", "detect"]

StateRename = Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Importer:
    name: str
    module: str
    #: Class-module prefixes that mark a model of this tool (checked without importing the tool).
    marks: tuple[str, ...]

    def _impl(self):
        return importlib.import_module(self.module)

    def detect(self, model: nn.Module) -> bool:
        if not any(type(m).__module__.startswith(self.marks) for m in model.modules()) and self.marks:
            return False
        return bool(self._impl().detect(model))

    def open_source(self, model: nn.Module) -> SourceModel:
        return self._impl().open_source(model)

    def rename_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A state dict in the names this tool's modules use today (legacy names renamed)."""
        rename = getattr(self._impl(), "rename_state", None)
        return rename(state) if rename is not None else dict(state)


#: Checked in order: PT2E graphs before torch.ao (a PT2E graph is also a GraphModule).
IMPORTERS: tuple[Importer, ...] = (
    Importer("torchao PT2E", "qconvert.imports.pt2e", ("torchao.", "torch.fx.")),
    Importer("torch.ao", "qconvert.imports.torch_ao", ("torch.ao.",)),
    Importer("torch.ao", "qconvert.imports.torch_ao_int8", ("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")),
    Importer("ModelOpt", "qconvert.imports.modelopt", ("modelopt.",)),
    Importer("Brevitas", "qconvert.imports.brevitas", ("brevitas.",)),
)


def detect(model: nn.Module) -> Importer | None:
    """The importer for a quantized or QAT-prepared model; None for a float model."""
    return next((i for i in IMPORTERS if i.detect(model)), None)
