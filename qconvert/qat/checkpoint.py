"""QAT checkpoints: one file holding the recipe, the trained graph and the learned ranges.

The file is a ``torch.save`` of strings, numbers, lists, dicts and tensors only, so it
loads with ``torch.load(weights_only=True)``; the graph is the trained float model as a
``torch.export`` program (the bytes of ``torch.export.save``, BatchNorm unfolded, batch
dynamic). Two checks refuse a checkpoint that is not what ``save`` wrote:

- a SHA-256 over every entry: a file edited by hand, or assembled from pieces of other
  checkpoints, no longer matches it;
- the graph's fingerprint (``qconvert.core.capture.graph_fingerprint``) and the tensor
  names of the ranges must match the graph: ranges learned on another model are refused
  even if someone recomputed the hash.
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import torch
from torch import nn
from torch.fx import GraphModule

from qconvert.core.capture import Captured, graph_fingerprint
from qconvert.errors import BadInputError, ModelLoadError
from qconvert.qat.model import Origin, QATModel
from qconvert.recipe.model import Recipe
from qconvert.version import __version__

__all__ = ["FORMAT", "FORMAT_VERSION", "QATCheckpoint", "is_checkpoint_ref", "load", "read", "save"]

FORMAT = "qconvert-qat"
FORMAT_VERSION = 1
#: ``--model`` references read as QAT checkpoints.
SUFFIXES = (".pt", ".pth")

Range = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class QATCheckpoint:
    """A checked checkpoint: everything a build or ``load`` needs."""

    path: Path
    recipe: Recipe
    #: The trained float model, BatchNorm unfolded, as ``ExportedProgram.module()``.
    graph: GraphModule
    #: The float model before QAT (same graph, the weights ``prepare`` was given).
    reference: GraphModule
    input_names: tuple[str, ...]
    example_inputs: tuple[torch.Tensor, ...]
    fingerprint: str
    #: Activation key -> (lo, hi), float64 scalars.
    activations: dict[str, Range]
    #: Weight key -> (lo, hi) per channel (or scalars), only for learned weight ranges.
    weights: dict[str, Range]
    #: Tensor key -> the module that produced it (for statistics and reports).
    modules: dict[str, str]
    #: Tensor key -> how its range trained (ema, pact, lsq, fixed, minmax).
    learning: dict[str, str]
    #: The QATModel's state, to go on training (``load``).
    state: dict[str, torch.Tensor]

    def captured(self) -> Captured:
        return Captured(self.graph, self.input_names, self.example_inputs, self.fingerprint)


def is_checkpoint_ref(ref: str) -> bool:
    """Whether a ``--model`` reference names a QAT checkpoint file (by its suffix)."""
    return ref.endswith(SUFFIXES)


def save(model: nn.Module, path: str | Path) -> Path:
    """Write ``model`` (what ``prepare`` returned, trained; a DDP wrapper is unwrapped) to ``path``.

    The file is written beside ``path`` and moved into place, so ``path`` is never half-written.
    """
    model = getattr(model, "module", model) if isinstance(model, nn.parallel.DistributedDataParallel) else model
    if not isinstance(model, QATModel):
        raise BadInputError(f"qconvert.qat.save takes the module qconvert.qat.prepare returned, not {type(model).__name__}")
    path = Path(path)
    if not is_checkpoint_ref(str(path)):
        raise BadInputError(f"{path}: a QAT checkpoint's name ends in {' or '.join(SUFFIXES)} "
                            "(that is how 'qconvert build --model' knows it)")
    payload = _payload(model)
    payload["digest"] = _digest(payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _payload(model: QATModel) -> dict[str, Any]:
    origin = model.origin
    acts, weights = model.learned_ranges()
    fqs = model.fake_quants()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "qconvert_version": __version__,
        "torch_version": str(torch.__version__),
        "recipe": origin.recipe.model_dump_json(),
        "program": _program_bytes(model.origin, model.float_state()),
        "reference_program": _program_bytes(model.origin, None),
        "input_names": list(origin.input_names),
        "example_inputs": [t.detach().clone() for t in origin.example_inputs],
        "fingerprint": origin.fingerprint,
        "activations": {k: torch.stack([lo, hi]) for k, (lo, hi) in sorted(acts.items())},
        "weights": {k: torch.stack([lo, hi]) for k, (lo, hi) in sorted(weights.items())},
        "modules": {fq.spec.key: fq.spec.module for fq in fqs},
        "learning": {fq.spec.key: fq.learn for fq in fqs},
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
    }


def _program_bytes(origin: Origin, trained: dict[str, torch.Tensor] | None) -> torch.Tensor:
    """The float graph with the ``trained`` state (or the reference model's, if None), exported as
    the captured graph was (non-strict keeps its node names and module paths, so the fingerprint
    and the ranges' keys stay valid)."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    with warnings.catch_warnings():  # torch's own deprecation notices while copying and exporting
        warnings.simplefilter("ignore")
        graph = copy.deepcopy(origin.float_graph if trained is not None else origin.reference)
        if trained is not None:
            graph.load_state_dict(trained, strict=True)
        program = torch.export.export(graph, origin.example_inputs, dynamic_shapes=tuple({0: batch} for _ in origin.example_inputs),
                                      strict=False)
    if graph_fingerprint(program.module(), origin.example_inputs) != origin.fingerprint:
        raise RuntimeError("re-exporting the trained graph changed it; the checkpoint would not match its ranges")
    buf = io.BytesIO()
    torch.export.save(program, buf)
    return torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)


def _digest(payload: Mapping[str, Any]) -> str:
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != "digest"})
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    """A canonical byte stream of a payload: type tags, sorted keys, tensor dtype/shape/bytes."""
    if isinstance(obj, Mapping):
        h.update(f"d{len(obj)};".encode())
        for k in sorted(obj):
            _feed(h, str(k))
            _feed(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"l{len(obj)};".encode())
        for v in obj:
            _feed(h, v)
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().contiguous().cpu()
        h.update(f"t{t.dtype}{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, str):
        data = obj.encode()
        h.update(f"s{len(data)};".encode() + data)
    elif isinstance(obj, (bool, int, float)) or obj is None:
        h.update(f"v{obj!r};".encode())
    else:
        raise TypeError(f"cannot hash {type(obj).__name__}")


def read(path: str | Path) -> QATCheckpoint:
    """Load and check a checkpoint.

    Raises:
        ModelLoadError: not a file ``save`` wrote, edited after saving, or its ranges do not
            belong to its graph; the message says which.
    """
    from qconvert.io.files import reading

    path = Path(path)
    raw = _load_raw(path)
    with reading(path, "QAT checkpoint", ModelLoadError, "save it again with qconvert.qat.save"):
        return _checked(path, raw)


def _checked(path: Path, raw: dict[str, Any]) -> QATCheckpoint:
    if raw.get("format_version") != FORMAT_VERSION:
        raise ModelLoadError(f"{path}: QAT checkpoint format {raw.get('format_version')!r}; this qconvert reads format {FORMAT_VERSION}")
    if raw.get("digest") != _digest(raw):
        raise ModelLoadError(
            f"{path}: the checkpoint's content does not match the hash qconvert.qat.save recorded: it was edited, or "
            "assembled from other checkpoints, after saving; save it again from the trained model"
        )
    try:
        ck = _parse(path, raw)
    except (KeyError, TypeError, ValueError, pydantic.ValidationError) as e:
        raise ModelLoadError(f"{path}: malformed QAT checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    _check_graph(ck)
    return ck


def _load_raw(path: Path) -> dict[str, Any]:
    from qconvert.io.files import check_file

    check_file(path, "QAT checkpoint", ModelLoadError, "give a file written by qconvert.qat.save")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types for a file that is not its format
        raise ModelLoadError(f"{path}: not a QAT checkpoint written by qconvert.qat.save ({type(e).__name__})") from e
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ModelLoadError(
            f"{path}: not a QAT checkpoint written by qconvert.qat.save (a plain state dict goes with "
            "'--model file.py:factory --weights FILE')"
        )
    return raw


def _parse(path: Path, raw: dict[str, Any]) -> QATCheckpoint:
    return QATCheckpoint(
        path=path,
        recipe=Recipe.model_validate_json(raw["recipe"]),
        graph=_program(raw["program"]),
        reference=_program(raw["reference_program"]),
        input_names=tuple(str(n) for n in raw["input_names"]),
        example_inputs=tuple(raw["example_inputs"]),
        fingerprint=str(raw["fingerprint"]),
        activations={k: (v[0], v[1]) for k, v in raw["activations"].items()},
        weights={k: (v[0], v[1]) for k, v in raw["weights"].items()},
        modules=dict(raw["modules"]),
        learning=dict(raw["learning"]),
        state=dict(raw["state"]),
    )


def _program(data: torch.Tensor) -> GraphModule:
    with warnings.catch_warnings():  # torch's own deprecation notices while unpickling its tree specs
        warnings.simplefilter("ignore")
        return torch.export.load(io.BytesIO(data.numpy().tobytes())).module()


def _check_graph(ck: QATCheckpoint) -> None:
    for graph in (ck.graph, ck.reference):
        found = graph_fingerprint(graph, ck.example_inputs)
        if found != ck.fingerprint:
            raise ModelLoadError(
                f"{ck.path}: its graph (fingerprint {found}) is not the one its ranges were learned on "
                f"(fingerprint {ck.fingerprint}): the checkpoint mixes two models"
            )
    names = {n.name for n in ck.graph.graph.nodes}
    foreign = sorted(k for k in ck.activations if k not in names)
    if foreign:
        raise ModelLoadError(f"{ck.path}: ranges for tensors its graph does not have ({', '.join(foreign[:5])}): "
                             "the checkpoint mixes two models")
    # the program is the trained float model: its weights are the training state's, exactly
    differ = sorted(k for k, v in ck.graph.state_dict().items()
                    if not (isinstance(ck.state.get(f"graph.{k}"), torch.Tensor) and ck.state[f"graph.{k}"].shape == v.shape
                            and torch.equal(ck.state[f"graph.{k}"], v)))
    if differ:
        raise ModelLoadError(
            f"{ck.path}: its graph's weights are not the ones its ranges were trained with ({', '.join(differ[:3])}): "
            "the checkpoint mixes two models"
        )


def load(path: str | Path) -> QATModel:
    """The trained ``QATModel`` back from a checkpoint, to evaluate it or go on training."""
    from qconvert.qat.prepare import prepare_captured

    ck = read(path)
    model = prepare_captured(ck.captured(), ck.recipe, reference=ck.reference)
    try:
        model.load_state_dict(ck.state, strict=True)
    except RuntimeError as e:
        raise ModelLoadError(f"{ck.path}: its training state does not fit its graph ({str(e).splitlines()[0]})") from e
    return model
