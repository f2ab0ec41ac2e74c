"""qconvert target ``pytorch``: int8 kernels in plain torch (oneDNN/fbgemm on x86, qnnpack on ARM)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from qconvert.targets import Artifact, Availability, FastTypes, Latency, Placement, QuantConstraints, Target
from qconvert_pytorch.details import PytorchDetails
from qconvert_pytorch.options import PyTorchOptions

if TYPE_CHECKING:
    import numpy as np

    from qconvert.targets import QuantizedModel

__all__ = ["PyTorchOptions", "PyTorchTarget"]


class PyTorchTarget(Target[PyTorchOptions]):
    """A file plain torch loads: an ExportedProgram for inductor, or TorchScript of quantized modules."""

    name = "pytorch"
    build_cost = 2.4  # emit, verify and latency next to onnx's (the digits sample: see Target.build_cost)
    description = "int8 PyTorch (inductor/oneDNN .pt2 or TorchScript quantized modules), verified in torch"
    Options = PyTorchOptions
    api_version = 1
    Details = PytorchDetails
    #: oneDNN and fbgemm match the simulation within 1 output step; each artifact declares its own
    #: tolerance (qnnpack and dynamic quantization differ more, see ``export.TOLERANCE_LSB``).
    parity_tolerance_lsb = 1.0

    def available(self) -> Availability:
        import torch

        engines = set(torch.backends.quantized.supported_engines)
        if not engines & {"x86", "fbgemm", "qnnpack"}:
            return Availability(False, "this torch build has no quantized engine (x86/fbgemm/qnnpack): install a stock torch wheel")
        return Availability(True)

    def runtime_version(self) -> str:
        import torch

        return f"torch {torch.__version__}"

    def warm_up(self) -> Callable[[], object] | None:
        from qconvert_pytorch.engine import cpp_compiler

        if cpp_compiler() is None:  # no inductor here: nothing to probe
            return None
        # inductor picks its vector instruction set by compiling and loading a probe library in a fresh Python
        # process per candidate (about 0.9 s, once per process; cached by valid_vec_isa_list): done here while the
        # build captures, a worker forked afterwards inherits the answer. Its imports happen here, not in the thread.
        import torch._appdirs
        import torch._inductor.codecache
        import torch.utils._filelock
        import torch.utils.cpp_extension  # noqa: F401
        from torch._inductor.cpu_vec_isa import valid_vec_isa_list

        return valid_vec_isa_list

    def constraints(self, options: PyTorchOptions) -> QuantConstraints:
        # Integer kernels take uint8 activations with a zero point and int8 symmetric weights (oneDNN
        # requires zero weight zero points). fbgemm's dynamic kernels halve the activation range
        # (reduce_range) so they cannot overflow int16 on CPUs without VNNI; qnnpack ignores it.
        return QuantConstraints(
            activation_modes=frozenset({"asym_u"}), weight_modes=frozenset({"sym"}),
            max_activation_bits=8, max_weight_bits=8,
            dynamic_ops=frozenset({"linear", "lstm", "gru", "embedding"}),
            dynamic_activation_bits=7 if options.backend == "x86" else 8,
        )

    def fast_types(self, options: PyTorchOptions) -> FastTypes:
        device = "x86 CPU (oneDNN/fbgemm)" if options.backend == "x86" else "Arm CPU (qnnpack)"
        return FastTypes(device, "asym_u",
                         why="torch's int8 CPU kernels take uint8 activations with a zero point and int8 symmetric weights")

    def placement(self, options: PyTorchOptions) -> Placement:
        # oneDNN, fbgemm and qnnpack take float biases and quantize them with input x weight scale
        # themselves; inductor's int8 patterns only match a float bias.
        return Placement(int32_bias=False, name="pytorch")

    def emit(self, qmodel: QuantizedModel, out_dir: Path, options: PyTorchOptions) -> Artifact:
        from qconvert_pytorch.export import emit_pytorch

        return emit_pytorch(qmodel, out_dir, options, self.name)

    def run(self, artifact: Artifact, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        from qconvert_pytorch.runtime import run_pytorch

        d = PytorchDetails.of(artifact)
        return run_pytorch(artifact.path, d.lowering, d.backend, artifact.input_names, inputs)

    def latency(self, qmodel: QuantizedModel, artifact: Artifact, options: PyTorchOptions,
                batch_sizes: tuple[int, ...]) -> Latency | None:
        """The artifact loaded as README.md says (.pt2 compiled with freezing, .pt by torch.jit.load) vs the float
        graph compiled the same way (.pt2) or in eager mode (.pt)."""
        from qconvert_pytorch.latency import measure_latency

        return measure_latency(qmodel, artifact, batch_sizes, self.runtime_version())
