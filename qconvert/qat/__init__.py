"""Quantization-aware training: ``prepare`` a model, train it in your own loop, ``save`` it, build from it.

    qat_model = qconvert.qat.prepare(model, "recipe.yaml", example_inputs, calibration=batches)
    ...  # your training loop, plain or under DistributedDataParallel
    qconvert.qat.save(qat_model, "model.qat.pt")

then ``qconvert build --model model.qat.pt --eval-data E --target T --out OUT`` emits every
target from the learned ranges, without calibrating; ``qconvert.qat.load`` gives the trained
model back to evaluate or go on training.
"""

from qconvert.qat.checkpoint import load, save
from qconvert.qat.model import QATModel
from qconvert.qat.prepare import prepare

__all__ = ["QATModel", "load", "prepare", "save"]
