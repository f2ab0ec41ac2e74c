"""Run an artifact in its runtime: every output against the simulation and the float model, and its golden files.

The parity loop feeds the evaluation data to the artifact's runtime (``Target.run``) and to the
Q/DQ simulation batch by batch, beside the float outputs the build computed once
(``FloatReferences``); ``OutputsParity`` keeps the figures. The golden files are a few inputs and
the runtime's outputs for them, which ``qconvert verify`` replays on the device.
"""

from __future__ import annotations

import numpy as np
import torch

from qconvert.core.outputs import flatten
from qconvert.core.quantize import QuantizedModel
from qconvert.io.data import Dataset
from qconvert.progress import track
from qconvert.targets.base import Artifact, Target
from qconvert.timings import Timings
from qconvert.verify.entries import RunFigures
from qconvert.verify.output_parity import OutputsParity
from qconvert.verify.references import FloatReferences

__all__ = ["GOLDEN_SAMPLES", "verify_outputs", "write_golden"]

#: Evaluation samples written as golden inputs and outputs next to each artifact.
GOLDEN_SAMPLES = 8


def verify_outputs(target: Target, artifact: Artifact, qmodel: QuantizedModel, refs: FloatReferences, data: Dataset,
                   timings: Timings) -> RunFigures:
    """Every output of the artifact in its runtime against the simulation and the float model (``RunFigures`` says
    which output each figure is of)."""
    # A float output (TensorRT's logits) is measured in the step it would have as this target's activation.
    parity = OutputsParity(qmodel.captured.output_names, qmodel.parity_steps(), qmodel.output_scales())
    with torch.no_grad():
        bs = refs.batch_size
        for b, float_outs in track(refs.with_batches(data), -(-data.size // bs), f"{target.name}: verify"):
            tensors = tuple(torch.from_numpy(np.array(a)) for a in b.inputs)
            with timings.phase("simulation", target.name):
                sim = [t.numpy() for t in flatten(qmodel.simulation(*tensors))]
            with timings.phase("runtime_run", target.name):
                out = target.run(artifact, dict(zip(artifact.input_names, b.inputs)))
            parity.update(list(float_outs), sim, out, b.labels)
    return RunFigures.of(parity.result())


def write_golden(target: Target, artifact: Artifact, data: Dataset) -> None:
    """``golden/input_<name>.npy`` and ``golden/output_<name>.npy`` in the artifact's directory: the first
    ``GOLDEN_SAMPLES`` evaluation samples and what the runtime here answers for them."""
    golden = artifact.directory / "golden"
    golden.mkdir()
    b = next(data.batches(GOLDEN_SAMPLES, limit=GOLDEN_SAMPLES))
    inputs = dict(zip(artifact.input_names, b.inputs))
    for name, a in inputs.items():
        np.save(golden / f"input_{name}.npy", a)
    for name, o in zip(artifact.output_names, target.run(artifact, inputs)):
        np.save(golden / f"output_{name}.npy", o)
