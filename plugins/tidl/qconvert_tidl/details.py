"""What the tidl target records about its artifact (manifest.json ``artifact.details``)."""

from __future__ import annotations

from pydantic import ConfigDict

from qconvert.targets import ArtifactDetails

__all__ = ["TidlDetails"]


class TidlDetails(ArtifactDetails):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Clip nodes carrying the calibrated ranges in the float model.
    clips: int
    tensor_bits: int
    calibration_option: int
    #: The TFLite Clip model's file, or None where it was not written.
    tflite: str | None
    features_16bit: list[str]
    params_16bit: list[str]
