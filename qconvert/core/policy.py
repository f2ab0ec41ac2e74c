"""From recipe (and a target's constraints) to one ``TensorQuant`` per tensor."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from qconvert.core.constraints import QuantConstraints
from qconvert.core.plan import TensorQuant
from qconvert.errors import ConstraintError, RecipeError, did_you_mean
from qconvert.recipe.model import CalibrationConfig, LayerOverride, QScheme, Recipe, Requantize

__all__ = ["QuantPolicy", "check_layer_names", "matches"]


def matches(pattern: str, module: str) -> bool:
    """Exact name, a glob, or a parent module (pattern 'layer1' covers 'layer1.0.conv1')."""
    return module == pattern or fnmatch.fnmatchcase(module, pattern) or module.startswith(pattern + ".")


def check_layer_names(recipe: Recipe, module_names: Iterable[str]) -> None:
    """Refuse recipe layer names that match no module of the model."""
    names = sorted({n for n in module_names if n})
    fields = [("exclude", p) for p in recipe.exclude] + [("no_clip", p) for p in recipe.no_clip]
    fields += [(f"overrides[{i}].match", o.match) for i, o in enumerate(recipe.overrides)]
    for where, pattern in fields:
        if not any(matches(pattern, n) for n in names):
            raise RecipeError(
                f"recipe {where}: '{pattern}' matches no layer of the model{did_you_mean(pattern, names)}; "
                "run 'qconvert layers' to list the module names"
            )


@dataclass
class QuantPolicy:
    """Resolves schemes for one quantization run.

    Precedence of overrides: an exact module-name match, then globs in recipe order.
    ``constraints`` is None during calibration, which observes every candidate tensor.
    """

    recipe: Recipe
    constraints: QuantConstraints | None = None
    target: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def calib(self) -> CalibrationConfig:
        return self.recipe.calibration

    def excluded(self, module: str) -> bool:
        return self.constraints is not None and any(matches(p, module) for p in self.recipe.exclude)

    def _override(self, module: str) -> LayerOverride | None:
        exact = [o for o in self.recipe.overrides if o.match == module]
        if exact:
            return exact[0]
        return next((o for o in self.recipe.overrides if matches(o.match, module)), None)

    def activation(self, key: str, module: str, fixed_range: tuple[float, float] | None = None,
                   clamp: tuple[float, float] | None = None) -> TensorQuant:
        o = self._override(module)
        scheme = (o.activations if o and o.activations else None) or self.recipe.activations
        method = (o.method if o and o.method else None) or self.recipe.calibration.method
        if any(matches(p, module) for p in self.recipe.no_clip):
            method = "minmax"
        return self._constrain(TensorQuant(key, "activation", module, scheme, method, fixed_range=fixed_range, clamp=clamp))

    def weight(self, key: str, module: str, ch_axis: int, depthwise: bool = False) -> TensorQuant:
        o = self._override(module)
        scheme: QScheme = (o.weights if o and o.weights else None) or self.recipe.weights
        if depthwise and self.recipe.depthwise_per_channel and scheme.granularity == "per_tensor":
            scheme = scheme.model_copy(update={"granularity": "per_channel"})
        method = (o.weight_method if o and o.weight_method else None) or self.recipe.weight_method
        return self._constrain(TensorQuant(key, "weight", module, scheme, method, ch_axis, depthwise=depthwise,
                                           narrow=self.recipe.narrow_weights))

    def quantizes(self, what: Literal["weights", "activations"]) -> bool:
        """Whether static quantization covers ``what`` (recipe ``quantize_only``); calibration observes both."""
        only = self.recipe.quantize_only
        return self.constraints is None or only is None or only == what

    def check_partial(self) -> None:
        """Refuse a weight-only or activation-only recipe on a target that cannot run it (ConstraintError)."""
        only = self.recipe.quantize_only
        if only is None or self.constraints is None or only in self.constraints.partial_schemes:
            return
        raise ConstraintError(f"target '{self.target}': {only}-only quantization (recipe quantize_only: {only}) is not supported: "
                              f"{self.constraints.partial_refusal}; quantize both, or build for a target that runs it (onnx, pytorch)")

    def requantize(self, module: str) -> Requantize | None:
        """The fixed-point requantization of ``module`` (an override's wins over the recipe's)."""
        o = self._override(module)
        req = o.requantize if o is not None and o.requantize is not None else self.recipe.requantize
        if req is not None and req.arithmetic == "auto":
            req = req.model_copy(update={"arithmetic": self._own_arithmetic(o)})
        return req

    def _own_arithmetic(self, o: LayerOverride | None) -> Literal["float", "fp32", "gemmlowp"]:
        """``requantize.arithmetic: auto``: the target's int8 kernels' arithmetic; float without a target
        and for wider activations (TFLite's 16x8 kernels are not XNNPACK's float32 requantization)."""
        scheme = (o.activations if o and o.activations else None) or self.recipe.activations
        if self.constraints is None or (scheme is not None and scheme.bits > 8):
            return "float"
        return self.constraints.requantize_arithmetic

    def accumulator_bits(self, module: str) -> int | None:
        """The accumulator width ``module`` is checked against (an override's wins), None: unchecked."""
        o = self._override(module)
        return o.accumulator_bits if o is not None and o.accumulator_bits is not None else self.recipe.accumulator_bits

    def dynamic(self, module: str) -> bool:
        """Whether ``module`` is quantized dynamically (recipe ``dynamic``, overrides win).

        Calibration (no constraints) answers False: it observes every static candidate,
        so one statistics set serves static and dynamic recipes alike.
        """
        if self.constraints is None:
            return False
        o = self._override(module)
        return o.dynamic if o is not None and o.dynamic is not None else self.recipe.dynamic

    def dynamic_activation(self, key: str, module: str) -> TensorQuant:
        """The per-batch input quantization of a dynamic op: unsigned, per tensor, at the
        bit width the target's dynamic kernels use (the recipe cannot change what they do)."""
        bits = self.constraints.dynamic_activation_bits if self.constraints is not None else 8
        scheme = QScheme(bits=bits, mode="asym_u", granularity="per_tensor")
        return TensorQuant(key, "activation", module, scheme, "minmax", dynamic=True)

    def dynamic_supported(self, op: str) -> bool:
        return self.constraints is not None and op in self.constraints.dynamic_ops

    def keep_float(self, module: str, op: str) -> None:
        """Record, once per layer, that a dynamic layer's op stays float on this target."""
        ops = sorted(self.constraints.dynamic_ops) if self.constraints is not None else []
        msg = (f"target '{self.target}': layer '{module}' ({op}) stays float: dynamic quantization here covers "
               f"{', '.join(ops) or 'no op'}")
        if msg not in self.warnings:
            self.warnings.append(msg)

    def _constrain(self, tq: TensorQuant) -> TensorQuant:
        if self.constraints is None:
            return tq
        tq = self.constraints.reencode(tq)
        # Each violation's fix covers its own rule only: fix one, then check again, so
        # several broken rules (mode and power of two) are all adapted.
        for _ in range(8):
            violations = self.constraints.check(tq)
            if not violations:
                break
            v = violations[0]
            where = f"target '{self.target}': layer '{tq.module or '<input>'}' ({tq.role} {tq.key})"
            if self.recipe.on_unsupported == "error":
                raise ConstraintError(
                    f"{where}: {v.rule}; change the recipe, or set 'on_unsupported: adapt' to let qconvert adapt it"
                )
            self.warnings.append(f"{where}: {v.rule}; adapted")
            tq = v.fixed
        if self.constraints.unsigned_nonnegative and tq.role == "activation" and tq.scheme.mode == "sym":
            tq = replace(tq, unsigned_if_nonnegative=True)
        return tq
