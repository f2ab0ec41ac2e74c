"""Forward keyword arguments: data arrays named after forward's parameters feed them by name.

A model whose data skips optional parameters (``pixel_values=None`` before ``input_ids``), or
feeds a keyword-only parameter, builds, and its onnx (and tflite) artifact is run and verified
against the float model called with the same keywords. A data array that is no parameter of
forward, and a required parameter with no data, are refused with one line and exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from qconvert.cli import main
from qconvert.core.binding import bind_inputs
from qconvert.core.capture import capture
from qconvert.io.inputs import input_names_for
from qconvert.io.model import load_model
from qconvert.targets.registry import TargetRegistry

MODELS = '''
import torch
from torch import nn


class Multimodal(nn.Module):
    """Hugging Face style: (pixel_values=None, input_ids=None, attention_mask=None) -> logits from the ids alone"""

    def __init__(self):
        super().__init__()
        self.emb, self.fc, self.head = nn.Embedding(30, 16), nn.Linear(16, 16), nn.Linear(16, 4)
        self.img = nn.Linear(12, 16)

    def forward(self, pixel_values=None, input_ids=None, attention_mask=None):
        if pixel_values is not None:
            raise ValueError("this test feeds no pixel_values")
        m = attention_mask.unsqueeze(-1).float()
        h = (self.emb(input_ids) * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.head(torch.relu(self.fc(h)))


class Scaled(nn.Module):
    """(x, *, scale) -> head(relu(fc(x) * scale)): scale is keyword-only"""

    def __init__(self):
        super().__init__()
        self.fc, self.head = nn.Linear(6, 12), nn.Linear(12, 3)

    def forward(self, x, *, scale):
        return self.head(torch.relu(self.fc(x) * scale))


def bert():
    """transformers' own BERT classifier as it is (a ModelOutput), fed input_ids and token_type_ids, no attention_mask"""
    import transformers

    cfg = transformers.BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=32, num_labels=3, initializer_range=0.2)
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(cfg).eval()


def multimodal():
    torch.manual_seed(0)
    return Multimodal()


def scaled():
    torch.manual_seed(0)
    return Scaled()
'''

RECIPE = """
weights: {bits: 8, mode: sym, granularity: per_channel}
activations: {bits: 8, mode: asym_u}
calibration: {method: minmax, num_samples: 64, batch_size: 16}
"""


def _tokens(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    ids = rng.integers(1, 30, (n, 7)).astype(np.int64)
    lengths = rng.integers(2, 8, n)
    mask = (np.arange(7)[None, :] < lengths[:, None]).astype(np.int64)
    return {"input_ids": ids * mask, "attention_mask": mask}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keywords")
    (d / "models.py").write_text(MODELS)
    (d / "recipe.yaml").write_text(RECIPE)
    rng = np.random.default_rng(0)
    # file order differs from forward order: names bind, not positions
    np.savez(d / "tok_calib.npz", attention_mask=(t := _tokens(rng, 64))["attention_mask"], input_ids=t["input_ids"])
    np.savez(d / "tok_eval.npz", **_tokens(rng, 48), y=rng.integers(0, 4, 48))
    x, s = rng.standard_normal((112, 6)).astype(np.float32), rng.uniform(0.5, 2.0, (112, 1)).astype(np.float32)
    np.savez(d / "sc_calib.npz", x=x[:64], scale=s[:64])
    np.savez(d / "sc_eval.npz", x=x[64:], scale=s[64:])
    np.savez(d / "sc_noscale.npz", x=x[64:])
    ids = rng.integers(1, 200, (112, 12)).astype(np.int64)
    types = (np.arange(12)[None, :] >= rng.integers(3, 10, (112, 1))).astype(np.int64)
    np.savez(d / "bert_calib.npz", token_type_ids=types[:64], input_ids=ids[:64])
    np.savez(d / "bert_eval.npz", input_ids=ids[64:], token_type_ids=types[64:])
    np.savez(d / "tok_extra.npz", **_tokens(rng, 16), token_ids=np.zeros((16, 7), np.int64))
    return {"dir": d, "models": d / "models.py", "recipe": d / "recipe.yaml"}


def _build(files: dict[str, Path], factory: str, calib: str, evaluate: str, out: Path, target: str = "onnx") -> tuple[int, str]:
    d = files["dir"]
    r = CliRunner().invoke(main, ["build", "--model", f"{files['models']}:{factory}", "--recipe", str(files["recipe"]),
                                  "--calib-data", str(d / calib), "--eval-data", str(d / evaluate), "--target", target,
                                  "--out", str(out), "--no-latency"])
    return r.exit_code, r.output


def test_inputs_bind_by_name_after_a_skipped_optional_parameter(files: dict[str, Path]) -> None:
    model = load_model(f"{files['models']}:multimodal", None)
    names = input_names_for(model, files["dir"] / "tok_eval.npz")
    assert names == ("input_ids", "attention_mask")  # forward order; pixel_values skipped; y stays labels
    ids, mask = torch.ones(2, 7, dtype=torch.long), torch.ones(2, 7, dtype=torch.long)
    assert bind_inputs(model, names, (ids, mask)) == ((), {"input_ids": ids, "attention_mask": mask})
    cap = capture(model, (ids, mask), names)
    assert cap.input_names == names
    t = _tokens(np.random.default_rng(1), 9)  # another batch size: the batch stays dynamic
    a, m = torch.from_numpy(t["input_ids"]), torch.from_numpy(t["attention_mask"])
    with torch.no_grad():
        torch.testing.assert_close(cap.graph(a, m), model(input_ids=a, attention_mask=m))


def test_keyword_only_parameter_binds_by_keyword(files: dict[str, Path]) -> None:
    model = load_model(f"{files['models']}:scaled", None)
    names = input_names_for(model, files["dir"] / "sc_eval.npz")
    assert names == ("x", "scale")
    x, s = torch.randn(2, 6), torch.ones(2, 1)
    args, kwargs = bind_inputs(model, names, (x, s))
    assert args == (x,) and kwargs == {"scale": s}


@pytest.mark.parametrize("factory, calib, evaluate", [("multimodal", "tok_calib.npz", "tok_eval.npz"),
                                                      ("scaled", "sc_calib.npz", "sc_eval.npz")])
def test_keyword_models_build_and_verify_in_onnxruntime(files: dict[str, Path], tmp_path: Path,
                                                        factory: str, calib: str, evaluate: str) -> None:
    code, text = _build(files, factory, calib, evaluate, tmp_path / "OUT")
    assert code == 0, text
    report = json.loads((tmp_path / "OUT" / "report.json").read_text())
    t = report["targets"]["onnx"]
    assert t["outputs"][0]["vs_float"]["samples"] == 48
    assert t["outputs"][0]["vs_simulation"]["max_lsb_error"] <= t["tolerance_lsb"] + 1e-3
    assert t["outputs"][0]["vs_float"]["sqnr_db"] > 12  # float reference called with the same keywords (a mix-up: ~0 dB)
    assert list(report["inputs"]) == (["input_ids", "attention_mask"] if factory == "multimodal" else ["x", "scale"])


@pytest.mark.parametrize("factory, calib, evaluate", [("multimodal", "tok_calib.npz", "tok_eval.npz"),
                                                      ("scaled", "sc_calib.npz", "sc_eval.npz")])
def test_keyword_models_build_for_tflite(files: dict[str, Path], tmp_path: Path, factory: str, calib: str, evaluate: str) -> None:
    if not TargetRegistry().get("tflite").available().ok:
        pytest.skip("tflite target unavailable: pip install -e plugins/tflite")
    code, text = _build(files, factory, calib, evaluate, tmp_path / "OUT", target="tflite")
    assert code == 0, text


def test_a_transformers_model_as_it_is_skips_attention_mask_by_keyword(files: dict[str, Path], tmp_path: Path) -> None:
    # BertForSequenceClassification.forward(input_ids, attention_mask, token_type_ids, ...): the data skips attention_mask
    pytest.importorskip("transformers")
    code, text = _build(files, "bert", "bert_calib.npz", "bert_eval.npz", tmp_path / "OUT")
    assert code == 0, text
    report = json.loads((tmp_path / "OUT" / "report.json").read_text())
    assert list(report["inputs"]) == ["input_ids", "token_type_ids"]
    t = report["targets"]["onnx"]
    assert [o["name"] for o in t["outputs"]] == ["logits"] and t["outputs"][0]["vs_float"]["samples"] == 48


def test_python_api_dict_batches_bind_by_keyword(files: dict[str, Path], tmp_path: Path) -> None:
    import qconvert

    model = load_model(f"{files['models']}:multimodal", None)
    rng = np.random.default_rng(3)
    batches = [{**_tokens(rng, 16), "labels": rng.integers(0, 4, 16)} for _ in range(4)]  # a DataLoader's dicts
    qconvert.build(model, files["recipe"], calib_data=batches, targets=["onnx"], out=tmp_path / "OUT", latency=False)
    report = json.loads((tmp_path / "OUT" / "report.json").read_text())
    assert list(report["inputs"]) == ["input_ids", "attention_mask"]
    assert report["targets"]["onnx"]["outputs"][0]["vs_float"]["samples"] == 64  # verified on the batches, by keyword


def _one_line_exit_2(code: int, text: str) -> str:
    assert code == 2, text
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1, text
    return text


def test_an_array_that_is_no_forward_parameter_is_refused(files: dict[str, Path], tmp_path: Path) -> None:
    text = _one_line_exit_2(*_build(files, "multimodal", "tok_extra.npz", "tok_eval.npz", tmp_path / "OUT"))
    assert "'token_ids' is no parameter" in text and "['pixel_values', 'input_ids', 'attention_mask']" in text
    assert not (tmp_path / "OUT").exists()


def test_a_required_keyword_only_parameter_without_data_is_refused(files: dict[str, Path], tmp_path: Path) -> None:
    text = _one_line_exit_2(*_build(files, "scaled", "sc_noscale.npz", "sc_eval.npz", tmp_path / "OUT"))
    assert "no array for the model input 'scale'" in text
    assert not (tmp_path / "OUT").exists()
