"""The digits CNN (residual add, depthwise conv) prepared and briefly trained with each QAT tool.

Factories here are ``--model tests/qat_sources.py:<name>`` references; each builds the prepared
model of one tool, into which the test loads the trained state dict with ``--weights``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "samples" / "digits"
EXAMPLE = torch.zeros(2, 1, 16, 16)


def _digits_module():
    name = "_qat_sources_digits"
    if name in sys.modules:  # torch.export (strict) looks classes up by their module
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, DIGITS / "model.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def float_digits() -> nn.Module:
    """stem conv-bn-relu -> residual block (add) -> depthwise conv -> pointwise -> pool -> fc, trained float."""
    m = _digits_module().DigitsNet()
    m.load_state_dict(torch.load(DIGITS / "weights.pt", weights_only=True))
    return m


def train_data() -> tuple[torch.Tensor, torch.Tensor]:
    d = np.load(DIGITS / "calib.npz")
    return torch.from_numpy(d["x"]), torch.from_numpy(d["y"])


def held_out() -> tuple[torch.Tensor, torch.Tensor]:
    d = np.load(DIGITS / "eval.npz")
    return torch.from_numpy(d["x"]), torch.from_numpy(d["y"])


def train(model: nn.Module, steps: int = 6, lr: float = 1e-3) -> nn.Module:
    """A few real QAT steps (Adam, batch 32), so weights, BatchNorm statistics and ranges move."""
    x, y = train_data()
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    for i in range(steps):
        xb, yb = x[32 * i % 256:][:32], y[32 * i % 256:][:32]
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


# -- torch.ao FX ---------------------------------------------------------------------------------

def fx_prepared() -> nn.Module:
    """``prepare_qat_fx`` with the x86 QAT mapping: reduce-range uint8 activations, per-channel int8 weights."""
    from torch.ao.quantization import get_default_qat_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    m = float_digits().train()
    return prepare_qat_fx(m, get_default_qat_qconfig_mapping("x86"), (EXAMPLE,))


# -- torch.ao eager ------------------------------------------------------------------------------

class EagerDigits(nn.Module):
    """The digits CNN written for eager-mode quantization: stubs and a FloatFunctional add."""

    def __init__(self) -> None:
        super().__init__()
        from torch.ao.quantization import DeQuantStub, QuantStub

        src = float_digits()
        self.quant, self.dequant = QuantStub(), DeQuantStub()
        self.stem, self.block_conv1, self.block_conv2 = src.stem, src.block_conv1, src.block_conv2
        self.skip = torch.ao.nn.quantized.FloatFunctional()
        self.block_relu, self.dw, self.pw, self.pool, self.fc = src.block_relu, src.dw, src.pw, src.pool, src.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.quant(x))
        x = self.block_relu(self.skip.add(self.block_conv2(self.block_conv1(x)), x))
        x = self.pw(self.dw(x))
        return self.dequant(self.fc(torch.flatten(self.pool(x), 1)))


def eager_prepared() -> nn.Module:
    """``fuse_modules_qat`` + ``prepare_qat`` with the x86 QAT qconfig."""
    from torch.ao.quantization import fuse_modules_qat, get_default_qat_qconfig, prepare_qat

    m = EagerDigits().train()
    groups = [[f"{b}.0", f"{b}.1", f"{b}.2"] for b in ("stem", "block_conv1", "dw", "pw")] + [["block_conv2.0", "block_conv2.1"]]
    m = fuse_modules_qat(m, groups)
    m.qconfig = get_default_qat_qconfig("x86")
    return prepare_qat(m)


# -- torchao PT2E --------------------------------------------------------------------------------

def pt2e_prepared() -> nn.Module:
    """``prepare_qat_pt2e`` with torchao's X86InductorQuantizer (QAT config) on the exported digits CNN."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    batch = torch.export.Dim("batch", min=1, max=1024)
    gm = torch.export.export(float_digits().train(), (EXAMPLE,), dynamic_shapes=({0: batch},), strict=True).module()
    from torchao.quantization.pt2e import allow_exported_model_train_eval

    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config(is_qat=True))
    return allow_exported_model_train_eval(prepare_qat_pt2e(gm, quantizer))


def save_converted_pt2e(prepared: nn.Module, path: Path) -> nn.Module:
    """``convert_pt2e`` the trained model and save the Q/DQ graph as a .pt2 (dynamic batch)."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    converted = convert_pt2e(move_exported_model_to_eval(prepared))
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.export.save(torch.export.export(converted, (EXAMPLE,), dynamic_shapes=({0: batch},)), str(path))
    return converted


# -- NVIDIA ModelOpt -----------------------------------------------------------------------------

def modelopt_quantized(calibrate_on: torch.Tensor | None = None) -> nn.Module:
    """``mtq.quantize`` with INT8_DEFAULT_CFG (int8 per-channel weights, per-tensor inputs of conv,
    linear and pooling), calibrated on ``calibrate_on`` (a factory: one zero batch, to create the
    amax buffers that ``--weights`` then overwrites)."""
    import modelopt.torch.quantization as mtq

    data = calibrate_on if calibrate_on is not None else EXAMPLE

    def loop(model: nn.Module) -> None:
        for i in range(0, data.shape[0], 32):
            model(data[i:i + 32])

    return mtq.quantize(float_digits(), mtq.INT8_DEFAULT_CFG, loop)


def modelopt_prepared() -> nn.Module:
    return modelopt_quantized()


def legacy_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict under pytorch-quantization's names (``conv._input_quantizer._amax``)."""
    out = {}
    for k, v in state.items():
        for q in ("input", "weight", "output"):
            k = k.replace(f".{q}_quantizer.", f"._{q}_quantizer.")
        out[k] = v
    return out


# -- Brevitas ------------------------------------------------------------------------------------

class BrevitasDigits(nn.Module):
    """The digits CNN in Brevitas layers: per-channel int8 weights, uint8 ReLU outputs, int8 identity
    quantizers on the input, before the residual add and the classifier (``pot``: power-of-two scales)."""

    def __init__(self, pot: bool = False) -> None:
        super().__init__()
        import brevitas.nn as qnn
        from brevitas import quant

        wq = quant.Int8WeightPerTensorFixedPoint if pot else quant.Int8WeightPerChannelFloat
        aq = quant.Int8ActPerTensorFixedPoint if pot else quant.Int8ActPerTensorFloat
        uq = quant.Uint8ActPerTensorFixedPoint if pot else quant.Uint8ActPerTensorFloat
        src = float_digits()

        def conv(m: nn.Conv2d, bn: nn.BatchNorm2d) -> list[nn.Module]:
            # power-of-two (TIDL) flows merge BatchNorm before QAT, so the trained weight grid is the deployed one
            c = qnn.QuantConv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                                groups=m.groups, bias=pot, weight_quant=wq)
            if not pot:
                c.weight.data.copy_(m.weight.data)
                return [c, bn]
            w, b = torch.nn.utils.fusion.fuse_conv_bn_weights(m.weight, None, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
            c.weight.data.copy_(w.data)
            c.bias.data.copy_(b.data)
            return [c]

        def block(seq: nn.Sequential, relu: bool = True) -> nn.Sequential:
            tail = [qnn.QuantReLU(act_quant=uq)] if relu else [qnn.QuantIdentity(act_quant=aq)]
            return nn.Sequential(*conv(seq[0], seq[1]), *tail)

        self.quant_in = qnn.QuantIdentity(act_quant=aq)
        self.stem, self.block_conv1 = block(src.stem), block(src.block_conv1)
        self.block_conv2 = block(src.block_conv2, relu=False)
        self.block_relu = qnn.QuantReLU(act_quant=uq)
        self.dw, self.pw = block(src.dw), block(src.pw)
        self.pool = src.pool
        self.quant_pool = qnn.QuantIdentity(act_quant=uq)
        self.fc = qnn.QuantLinear(src.fc.in_features, src.fc.out_features, bias=True, weight_quant=wq)
        self.fc.weight.data.copy_(src.fc.weight.data)
        self.fc.bias.data.copy_(src.fc.bias.data)
        self.quant_out = qnn.QuantIdentity(act_quant=aq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.quant_in(x))
        x = self.block_relu(self.block_conv2(self.block_conv1(x)) + x)
        x = self.pw(self.dw(x))
        return self.quant_out(self.fc(torch.flatten(self.quant_pool(self.pool(x)), 1)))


def brevitas_prepared() -> nn.Module:
    return BrevitasDigits()


def brevitas_pot_prepared() -> nn.Module:
    return BrevitasDigits(pot=True)


def float_twin_of(prepared: nn.Module) -> nn.Module:
    """The float network a torch.ao QAT model trains (BatchNorm folded as its eval forward folds it,
    fake quantizers removed), for a re-calibrated build of the same weights."""
    from qconvert.imports import torch_ao
    from qconvert.imports.tap import Tap

    twin = torch_ao.open_source(prepared).tapped
    for _, parent in list(twin.named_modules()):
        for name, child in list(parent._modules.items()):
            if isinstance(child, Tap):
                setattr(parent, name, nn.Identity())
    return twin


def fx_float_twin() -> nn.Module:
    return float_twin_of(fx_prepared())


def eager_converted() -> nn.Module:
    """``torch.ao.quantization.convert`` of the eager QAT model after 2 seeded steps: int8 modules.

    Trained in the factory (the same model every call): a converted state dict's packed int8
    parameters do not load back under ``torch.load(weights_only=True)``."""
    torch.manual_seed(0)
    return torch.ao.quantization.convert(train(eager_prepared(), steps=2).eval())
