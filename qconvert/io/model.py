"""Load the user's model: a factory in a file or module, or a saved ExportedProgram."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from qconvert.errors import ModelLoadError
from qconvert.io.files import check_file, first_line, reading

__all__ = ["load_model", "load_weights"]


def load_model(ref: str, weights: str | None = None) -> torch.nn.Module:
    """Resolve ``path/to/file.py:factory``, ``package.module:factory`` or ``file.pt2``.

    Weights are a state dict read with ``torch.load(weights_only=True)``.
    """
    if ref.endswith(".pt2"):
        model = _load_pt2(Path(ref))
    else:
        model = _call_factory(ref)
    if weights is not None:
        load_weights(model, Path(weights))
    return eval_mode(model)


def eval_mode(model: torch.nn.Module) -> torch.nn.Module:
    """Put a model in eval mode; an ExportedProgram's module refuses eval() and is
    already captured in the mode it was exported in."""
    try:
        model.eval()  # torchao's allow_exported_model_train_eval patches eval() to return None
    except NotImplementedError:
        pass
    return model


def _load_pt2(path: Path) -> torch.nn.Module:
    from qconvert.quiet import captured

    fix = "save one with torch.export.save(torch.export.export(model, example_inputs), 'model.pt2')"
    check_file(path, "model file", ModelLoadError, fix)
    # torch.export.load logs its own traceback for a bad archive before raising: keep it off the terminal
    with captured(), reading(path, "saved torch.export ExportedProgram (.pt2)", ModelLoadError, fix):
        return torch.export.load(str(path)).module()


def _call_factory(ref: str) -> torch.nn.Module:
    if ":" not in ref:
        raise ModelLoadError(f"--model '{ref}': expected 'path/to/file.py:factory', 'package.module:factory' or 'file.pt2'")
    where, name = ref.rsplit(":", 1)
    if where.endswith(".py"):
        path = check_file(where, "model file", ModelLoadError, "give path/to/file.py:factory", allow_empty=True)
        spec = importlib.util.spec_from_file_location(f"_qconvert_user_model_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent.resolve()))
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            raise ModelLoadError(f"{path}: importing the model file failed: {type(e).__name__}: {e}") from e
        finally:
            sys.path.remove(str(path.parent.resolve()))
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise ModelLoadError(f"--model '{ref}': cannot import module '{where}' ({e})") from e
    factory = getattr(module, name, None)
    if not callable(factory):
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise ModelLoadError(f"--model '{ref}': '{name}' is not a callable in {where} (callables there: {', '.join(public[:10])})")
    try:
        model = factory()
    except Exception as e:
        raise ModelLoadError(f"--model '{ref}': calling {name}() failed: {type(e).__name__}: {e}") from e
    if not isinstance(model, torch.nn.Module):
        raise ModelLoadError(f"--model '{ref}': {name}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_weights(model: torch.nn.Module, path: Path,
                 rename: Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None) -> None:
    """Load a state dict file into ``model``; ``rename`` maps legacy key names first (an importer's)."""
    fix = "save it with torch.save(model.state_dict(), path)"
    check_file(path, "weights file", ModelLoadError, fix)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelLoadError(f"{path}: not a loadable state dict ({first_line(e)}); {fix}") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path}: expected a state dict, got {type(state).__name__}")
    if rename is not None:
        state = rename(state)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()
        detail = " ".join(line.strip() for line in first[1:3]) or first[0]
        detail = detail if len(detail) < 240 else detail[:240] + "..."
        raise ModelLoadError(f"{path}: weights do not fit the model: {detail}") from e
