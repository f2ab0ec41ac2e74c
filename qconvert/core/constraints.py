"""What a target can represent, declared by the target and enforced by the core."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from qconvert.core.plan import TensorQuant
from qconvert.recipe.model import Mode

__all__ = ["QuantConstraints", "Violation"]

_ALL_MODES: frozenset[Mode] = frozenset({"sym", "asym_u", "asym_s"})


@dataclass(frozen=True)
class Violation:
    """One rule a tensor's scheme breaks, with the scheme that would satisfy it."""

    rule: str
    fixed: TensorQuant


@dataclass(frozen=True)
class QuantConstraints:
    """Limits a target puts on schemes.

    ``check`` returns the violations of one tensor; the core refuses them, or
    adapts them when the recipe says ``on_unsupported: adapt``.
    """

    activation_modes: frozenset[Mode] = _ALL_MODES
    weight_modes: frozenset[Mode] = _ALL_MODES
    max_activation_bits: int = 16
    max_weight_bits: int = 16
    weight_per_channel: bool = True
    power_of_two: Literal["any", "required"] = "any"
    notes: tuple[str, ...] = field(default=())
    #: Per-channel weights only for depthwise convolutions (TIDL on TDA4VM); needs ``weight_per_channel``.
    per_channel_depthwise_only: bool = False
    #: A ``sym`` activation whose calibrated range has no negative values takes the unsigned
    #: range [0, 2**bits - 1] with zero point 0, as TIDL does for ReLU outputs (one more bit).
    unsigned_nonnegative: bool = False
    #: Ops this target runs with dynamic quantization (recipe ``dynamic``), among "linear", "lstm",
    #: "gru", "embedding"; in a dynamic layer every other weighted op stays float, with a warning.
    dynamic_ops: frozenset[str] = frozenset()
    #: Bits of the unsigned per-batch range of dynamic activations: 8, or 7 where the kernel
    #: halves the range against int16 overflow (fbgemm/x86's ``reduce_range``).
    dynamic_activation_bits: int = 8
    #: (requested, stored) activation modes that keep the same quantization grid, applied by
    #: ``reencode`` before ``check`` and without a warning: TFLite stores an ``asym_u`` tensor as
    #: int8 with its zero point moved down by 2**(bits-1) (``("asym_u", "asym_s")``), same values.
    activation_mode_equivalents: tuple[tuple[Mode, Mode], ...] = ()
    #: Symmetric weights must leave the most negative code unused ([-127, 127] for 8 bits).
    narrow_weights: bool = False
    #: Which partial static schemes (recipe ``quantize_only``) the target runs: "weights" (weight-only)
    #: and/or "activations" (the Q/DQ simulation runs both); others are refused with ``partial_refusal``.
    partial_schemes: frozenset[Literal["weights", "activations"]] = frozenset({"weights", "activations"})
    #: What recipe ``requantize.arithmetic: auto`` means here: the arithmetic this runtime's int8
    #: conv/linear kernels requantize with (``core.intarith``); "float" where none is simulated.
    requantize_arithmetic: Literal["float", "fp32", "gemmlowp"] = "float"
    partial_refusal: str = ""
    #: Modes allowed for activations wider than 8 bits, where they differ from ``activation_modes``
    #: (TFLite's 16x8 kernels take int16 activations with zero point 0 only: ``{"sym"}``).
    wide_activation_modes: frozenset[Mode] | None = None

    def reencode(self, tq: TensorQuant) -> TensorQuant:
        """The same scheme in the storage this target uses, where that changes no value."""
        to = dict(self.activation_mode_equivalents).get(tq.scheme.mode) if tq.role == "activation" else None
        if to is None:
            return tq
        if {tq.scheme.mode, to} != {"asym_u", "asym_s"}:  # a plugin's declaration error, not the user's
            raise ValueError(f"activation_mode_equivalents: '{tq.scheme.mode}' -> '{to}' changes the grid; only asym_u <-> asym_s keep it")
        return replace(tq, scheme=tq.scheme.model_copy(update={"mode": to}))

    def check(self, tq: TensorQuant) -> list[Violation]:
        out: list[Violation] = []
        s = tq.scheme
        weight = tq.role == "weight"
        modes = self.weight_modes if weight else self.activation_modes
        max_bits = self.max_weight_bits if weight else self.max_activation_bits
        wide = not weight and s.bits > 8 and self.wide_activation_modes is not None
        if wide:
            modes = self.wide_activation_modes  # type: ignore[assignment]  # not None: ``wide`` checked it
        if s.mode not in modes:
            to = "sym" if "sym" in modes else min(modes)
            what = f" at {s.bits} bits" if wide else ""
            out.append(Violation(f"{tq.role} mode{what} must be one of {sorted(modes)}, not '{s.mode}'",
                                 replace(tq, scheme=s.model_copy(update={"mode": to}))))
        if s.bits > max_bits:
            out.append(Violation(f"{tq.role}s can have at most {max_bits} bits, not {s.bits}",
                                 replace(tq, scheme=s.model_copy(update={"bits": max_bits}))))
        if weight and s.granularity == "per_channel" and not self.weight_per_channel:
            out.append(Violation("weights must be per_tensor", replace(tq, scheme=s.model_copy(update={"granularity": "per_tensor"}))))
        elif weight and s.granularity == "per_channel" and self.per_channel_depthwise_only and not tq.depthwise:
            out.append(Violation("only depthwise convolution weights may be per_channel",
                                 replace(tq, scheme=s.model_copy(update={"granularity": "per_tensor"}))))
        if weight and self.narrow_weights and not tq.narrow and s.mode == "sym":
            q = 2 ** (s.bits - 1)
            out.append(Violation(f"symmetric weights must use the narrow range [-{q - 1}, {q - 1}], not [-{q}, {q - 1}]",
                                 replace(tq, narrow=True)))
        if self.power_of_two == "required" and not s.power_of_two:
            out.append(Violation("scales must be powers of two", replace(tq, scheme=s.model_copy(update={"power_of_two": True}))))
        return out
