# %% [markdown]
# # qconvert from Python: a model, a DataLoader, verified onnx and tflite artifacts
#
# A notebook-style script (each `# %%` is a cell in VS Code / Jupytext): a model defined here
# (no torchvision), trained for a few seconds on scikit-learn's digits, calibrated from a
# `DataLoader`, and built for onnx and tflite; each artifact is verified in its own runtime.
#
#     python samples/python_api/quickstart.py [OUT]

# %%
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import qconvert

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "digits"))
from train import digits_split, fit  # the digits data at 16x16 and the split every digits sample uses

# %% [markdown]
# ## The model, defined here


# %%
class SmallNet(nn.Module):
    """conv-bn-relu, a depthwise-separable stride-2 block, 4x4 pooling, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(8, 16, 1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.pw(self.dw(self.stem(x)))), 1))


torch.manual_seed(0)
x, y, train_idx, eval_idx = digits_split()
model = SmallNet()
fit(model, torch.optim.AdamW(model.parameters(), lr=3e-3), x[train_idx], y[train_idx], epochs=12)

# %% [markdown]
# ## Data as a training script has it: DataLoaders of (image, label) batches
#
# qconvert streams them (memory holds one batch) and re-cuts them into the recipe's batch size.


# %%
def loader(idx, batch_size: int) -> DataLoader:  # type: ignore[no-untyped-def]
    return DataLoader(TensorDataset(torch.from_numpy(x[idx]), torch.from_numpy(y[idx])), batch_size=batch_size)


calib = loader(train_idx[:256], 32)
evals = loader(eval_idx, 100)

# %% [markdown]
# ## The recipe: a dict, validated like a YAML file (an error names the key path)

# %%
recipe = {
    "weights": {"bits": 8, "mode": "sym", "granularity": "per_channel"},
    "calibration": {"method": "minmax", "num_samples": 256, "batch_size": 64},
    "on_unsupported": "adapt",  # a target that cannot represent a scheme adapts it and says so in the report
    "gates": {"max_accuracy_drop": 1.0},
}

# %% [markdown]
# ## Build: calibrate once, one artifact per target, each verified in its runtime

# %%
out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "OUT"
result = qconvert.build(model, recipe, calib_data=calib, eval_data=evals, targets=["onnx", "tflite"], out=out)
print(result.summary())
for name, t in result.targets.items():
    print(f"{name}: {t.artifact} ({t.size_bytes / 1024:.1f} KiB), accuracy {t.accuracy:.2f} % (float {result.float_accuracy:.2f} %), "
          f"{t.vs_simulation.max_lsb_error:.2f} LSB from the simulation")
print("gates:", "passed" if result.passed else "; ".join(result.gates.failures))

# %% [markdown]
# ## Verify again, as a board would (`qconvert.verify` imports no torch)

# %%
for name, t in result.targets.items():
    verdict = qconvert.verify(t.directory)
    print("\n".join(verdict.lines()))
    assert verdict.passed
