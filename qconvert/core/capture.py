"""Capture a model with torch.export, batch dimension dynamic."""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import warnings
from dataclasses import dataclass

import torch
from torch.fx import GraphModule

from qconvert.core.binding import bind_inputs
from qconvert.core.outputs import SINGLE_OUTPUT, dataclasses_registered, output_names
from qconvert.core.parametrize import baked
from qconvert.errors import CaptureError

__all__ = ["Captured", "capture", "forward_input_names", "graph_fingerprint"]


@dataclass(frozen=True)
class Captured:
    """The captured float graph, the template every quantization starts from.

    ``example_inputs`` have batch 2 (torch.export specializes batch 1).
    """

    graph: GraphModule
    input_names: tuple[str, ...]
    example_inputs: tuple[torch.Tensor, ...]
    fingerprint: str
    #: One name per graph output: the path of each tensor in the model's output structure
    #: (``logits``, ``hidden_states.2``), ``output`` for a model that returns one tensor.
    output_names: tuple[str, ...] = (SINGLE_OUTPUT,)


def forward_input_names(model: torch.nn.Module, count: int) -> tuple[str, ...]:
    try:
        params = [p for p in inspect.signature(model.forward).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params][:count]
    if len(names) < count:
        names += [f"input_{i}" for i in range(len(names), count)]
    return tuple(names)


def capture(model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], names: tuple[str, ...] | None = None) -> Captured:
    """Export ``model`` (in eval mode) with a dynamic batch dimension.

    ``names``: the forward parameter each example input feeds (default: the first positional
    parameters). Inputs are bound by ``bind_inputs``: where some go by keyword, the model is
    exported with them as keywords and the graph then takes all of them positionally, in
    ``names`` order, like any other captured graph.

    A model returning a structure of tensors (tuple, dict, dataclass, ``ModelOutput``)
    becomes a graph returning the flat tuple of those tensors, named in ``output_names``.
    Parametrized weights (``weight_norm``, spectral norm) are baked into plain
    parameters of a copy first: the caller's model is never changed.

    Raises:
        CaptureError: torch.export cannot capture the model; the message carries
            the first line of torch's reason and what usually fixes it.
    """
    names = names if names is not None else forward_input_names(model, len(example_inputs))
    args, kwargs = bind_inputs(model, names, example_inputs)
    batch = torch.export.Dim("batch", min=1, max=65536)
    dynamic: tuple[dict[int, object], ...] | dict[str, dict[int, object]] = tuple({0: batch} for _ in example_inputs)
    if kwargs:
        dynamic = {n: {0: batch} for n in names}
    was_training = model.training
    _set_mode(model, False)
    try:
        with baked(model) as plain:
            with torch.no_grad():
                sample = plain(*args, **kwargs)
            # not under no_grad: eval-mode nn.TransformerEncoderLayer would take its fused fast path there
            with dataclasses_registered(sample):
                ep = _export(plain, args, kwargs, dynamic)
    finally:
        _set_mode(model, was_training)
    gm = ep.module()
    if kwargs:
        _positional_graph_inputs(gm, names)
    outputs = output_names(sample)
    if outputs != (SINGLE_OUTPUT,):
        _flatten_graph_outputs(gm, len(outputs))
    return Captured(gm, names, example_inputs, _fingerprint(gm, example_inputs), outputs)


def _flatten_graph_outputs(gm: GraphModule, expected: int) -> None:
    """Make ``gm`` return the flat tuple of its tensor outputs instead of the model's structure."""
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    leaves = out_node.args[0]
    leaves = list(leaves) if isinstance(leaves, (list, tuple)) else [leaves]
    tensors = [n for n in leaves if isinstance(n, torch.fx.Node) and isinstance(n.meta.get("val"), torch.Tensor)]
    if len(tensors) != expected:
        raise CaptureError(f"the model returns {expected} tensors but torch.export captured {len(tensors)} tensor outputs; "
                           "return a tuple or dict of tensors from forward")
    out_node.args = (tuple(tensors),)
    codegen = gm.graph._codegen
    info = getattr(codegen, "pytree_info", None)
    if info is not None:
        codegen.pytree_info = info._replace(out_spec=torch.utils._pytree.tree_structure(tuple(range(expected))))  # type: ignore[attr-defined]  # torch's private codegen
    gm.recompile()


def _positional_graph_inputs(gm: GraphModule, names: tuple[str, ...]) -> None:
    """Make ``gm`` (exported with keyword inputs) take its inputs positionally, in ``names`` order."""
    placeholders = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
    codegen = gm.graph._codegen
    info = getattr(codegen, "pytree_info", None)
    if info is None or len(placeholders) != len(names):
        raise CaptureError(f"torch.export captured {len(placeholders)} inputs for the {len(names)} inputs {list(names)}; "
                           "pass the inputs positionally (name the data's arrays after forward's first parameters)")
    positional, keywords = info.in_spec.children_specs  # (args, kwargs): the positional part first, then the keywords
    flat_order = [*names[: positional.num_children], *keywords.context]
    if [str(n) for n in flat_order] != list(names):
        raise CaptureError(f"torch.export ordered the inputs {flat_order}, not {list(names)} as the data gives them")
    spec = torch.utils._pytree.tree_structure((tuple(range(len(names))), {}))
    codegen.pytree_info = info._replace(orig_args=list(names), in_spec=spec)  # type: ignore[attr-defined]  # torch's private codegen
    gm.recompile()


def _set_mode(model: torch.nn.Module, training: bool) -> None:
    # a loaded ExportedProgram's module refuses train()/eval(): its mode was fixed at export
    try:
        model.train(training)
    except NotImplementedError:
        pass


def _export(model: torch.nn.Module, args: tuple[torch.Tensor, ...], kwargs: dict[str, torch.Tensor],
            dynamic: tuple[dict[int, object], ...] | dict[str, dict[int, object]]) -> torch.export.ExportedProgram:
    errors: list[str] = []
    # strict first: it keeps a module used twice (a shared ReLU) apart, which PT2E needs.
    for strict in (True, False):
        try:
            # torch prints the partial graph when export fails; the user gets our one line instead.
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                return torch.export.export(model, args, kwargs=kwargs or None, dynamic_shapes=dynamic, strict=strict)
        except Exception as e:  # noqa: BLE001 -- torch raises many types here; all mean "cannot capture"
            errors.append(_first_line(e))
    raise CaptureError(
        f"torch.export cannot capture the model: {errors[-1]} "
        "(remove data-dependent Python control flow or unsupported ops from forward, "
        "or pass a saved ExportedProgram with --model file.pt2)"
    )


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def _fingerprint(gm: GraphModule, example_inputs: tuple[torch.Tensor, ...]) -> str:
    h = hashlib.sha256()
    for t in example_inputs:
        h.update(f"in:{t.dtype}:{tuple(t.shape[1:])};".encode())
    for n in gm.graph.nodes:
        h.update(f"{n.op}:{n.name}:{n.target};".encode())
    return h.hexdigest()[:16]


def graph_fingerprint(gm: GraphModule, example_inputs: tuple[torch.Tensor, ...]) -> str:
    """The fingerprint ``capture`` gives ``gm``: a graph loaded from a saved program (a QAT
    checkpoint) is checked against the one its statistics or ranges were made on."""
    return _fingerprint(gm, example_inputs)
