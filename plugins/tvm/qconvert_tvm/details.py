"""What the tvm target records about its artifact (manifest.json ``artifact.details``)."""

from __future__ import annotations

from pydantic import ConfigDict

from qconvert.targets import ArtifactDetails

__all__ = ["TvmDetails"]


class TvmDetails(ArtifactDetails):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tvm_version: str
    target: str
    #: The resolved TVM target, as TVM writes it (JSON).
    tvm_target: str
    arch: str
    files: list[str]
    #: How a board loads it: tvm.runtime.load_module(file) -> relax.VirtualMachine(mod, tvm.cpu())[entry](*inputs).
    entry: str
    #: The Q/DQ ONNX the module was compiled from (its latency baseline reads it).
    compiled_from: str
    narrow_range_clips: int
    #: The batch the library was compiled for where TVM could not import a dynamic one (the runtime then runs a
    #: batch in calls of this size); None: any batch.
    static_batch: int | None = None
