"""Models with several inputs: a .npz keyed by forward parameter names, integer dtypes kept,
wrong files refused with one line; a static two-input build runs in onnx and pytorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from qconvert.cli import main
from qconvert.errors import DataError
from qconvert.io.inputs import input_names_for
from qconvert.io.model import load_model

TWO_INPUTS = '''
import torch
from torch import nn

class TwoInputs(nn.Module):
    """(x float [N, 4], idx int [N, 3]) -> fc(x) + mean(embedding(idx)) -> relu -> head"""

    def __init__(self):
        super().__init__()
        self.fc, self.emb, self.head = nn.Linear(4, 8), nn.Embedding(10, 8), nn.Linear(8, 3)

    def forward(self, x, idx, scale=None):
        return self.head(torch.relu(self.fc(x) + self.emb(idx).mean(1)))

def build():
    torch.manual_seed(0)
    return TwoInputs()
'''


class Optional3(nn.Module):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        return input_ids


def _npz(tmp_path: Path, **arrays: np.ndarray) -> Path:
    p = tmp_path / "d.npz"
    np.savez(p, **arrays)
    return p


def test_names_follow_forward_order_not_file_order(tmp_path: Path) -> None:
    a = np.zeros((4, 3), np.int64)
    p = _npz(tmp_path, attention_mask=a, input_ids=a, labels=a[:, 0])
    assert input_names_for(Optional3(), p) == ("input_ids", "attention_mask")  # labels stay labels


def test_an_array_after_a_missing_optional_input_feeds_its_parameter(tmp_path: Path) -> None:
    # passed by keyword (qconvert.core.binding); tests/test_forward_keywords.py builds such a model
    a = np.zeros((4, 3), np.int64)
    assert input_names_for(Optional3(), _npz(tmp_path, input_ids=a, token_type_ids=a)) == ("input_ids", "token_type_ids")


class TakesKwargs(nn.Module):
    """Hugging Face style: flags arrive in **kwargs, never arrays"""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: object) -> torch.Tensor:
        return input_ids


@pytest.mark.parametrize("model", [Optional3(), TakesKwargs()])
def test_an_array_that_is_no_parameter_is_refused(tmp_path: Path, model: nn.Module) -> None:
    a = np.zeros((4, 3), np.int64)
    with pytest.raises(DataError, match="array 'token_ids' is no parameter of the model's forward, which takes \\['input_ids'"):
        input_names_for(model, _npz(tmp_path, input_ids=a, token_ids=a))


def _two_inputs(tmp_path: Path) -> nn.Module:
    (tmp_path / "two.py").write_text(TWO_INPUTS)
    return load_model(f"{tmp_path / 'two.py'}:build", None)


def test_a_missing_required_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no array for the model input 'idx'.*the file has \\['x', 'y'\\]"):
        input_names_for(_two_inputs(tmp_path), _npz(tmp_path, x=np.zeros((2, 4), np.float32), y=np.zeros(2)))


def test_several_required_inputs_need_a_keyed_npz(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 4), np.float32))
    with pytest.raises(DataError, match="takes 2 inputs \\['x', 'idx'\\]"):
        input_names_for(_two_inputs(tmp_path), tmp_path / "x.npy")


def test_single_input_takes_x_under_any_parameter_name(tmp_path: Path) -> None:
    class One(nn.Module):
        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return image

    assert input_names_for(One(), _npz(tmp_path, x=np.zeros((2, 3), np.float32))) == ("image",)


def test_static_two_input_build_runs_in_onnx_and_pytorch(tmp_path: Path) -> None:
    index_dtype = np.int32  # int64 is what the text sample feeds; int32 must survive too
    (tmp_path / "two.py").write_text(TWO_INPUTS)
    rng = np.random.default_rng(0)
    x, idx = rng.normal(size=(96, 4)).astype(np.float32), rng.integers(0, 10, (96, 3)).astype(index_dtype)
    np.savez(tmp_path / "data.npz", idx=idx, x=x, y=rng.integers(0, 3, 96))
    (tmp_path / "r.yaml").write_text("version: 1\ntargets:\n  pytorch: {lowering: quantized_modules}\n")
    out = tmp_path / "OUT"
    args = ["build", "--model", f"{tmp_path / 'two.py'}:build", "--recipe", str(tmp_path / "r.yaml"),
            "--calib-data", str(tmp_path / "data.npz"), "--out", str(out), "--target", "onnx", "--target", "pytorch"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert report["inputs"] == {"x": [4], "idx": [3]}
    for target in ("onnx", "pytorch"):
        t = report["targets"][target]
        assert t["executed"] and t["vs_simulation"]["max_lsb_error"] <= t["tolerance_lsb"] + 1e-6
        golden = out / target / "golden"
        assert np.load(golden / "input_idx.npy").dtype == index_dtype  # integer dtype kept end to end
        assert np.load(golden / "input_x.npy").dtype == np.float32
