"""What the pytorch target records about its artifact (manifest.json ``artifact.details``)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict

from qconvert.targets import ArtifactDetails

__all__ = ["PytorchDetails"]


class PytorchDetails(ArtifactDetails):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The quantized engine the artifact runs with (``torch.backends.quantized.engine``).
    backend: str
    lowering: Literal["inductor", "quantized_modules"]
    #: Dynamic quantization (activations quantized at run time).
    dynamic: bool
