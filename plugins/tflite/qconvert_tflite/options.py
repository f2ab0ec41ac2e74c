"""Options of the ``tflite`` target (recipe section ``targets.tflite``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from qconvert.targets import TargetOptions

__all__ = ["TFLiteOptions"]


class TFLiteOptions(TargetOptions):
    io: Literal["int8", "float"] = Field(
        "int8",
        description="int8: the model reads and writes int8 (the manifest records each input's and output's scale and "
        "zero point, so a device feeds raw int8); float: QUANTIZE/DEQUANTIZE ops at the edges take and give float32.",
    )
    batch: int = Field(
        1, ge=1, le=1024,
        description="Fixed batch size of the .tflite (litert-torch lowers static shapes only); larger inputs run in chunks.",
    )
    file_name: str = Field("model.tflite", description="Name of the .tflite file in OUT/tflite/.")
