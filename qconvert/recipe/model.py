"""The recipe: a typed, immutable description of how to quantize a model.

Every field carries a description because the JSON Schema in
``schemas/recipe.schema.json`` is generated from these models and is what
editors and reviewers read.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "RECIPE_VERSION",
    "AutoFallback",
    "CalibrationConfig",
    "Gates",
    "Granularity",
    "LayerOverride",
    "Mode",
    "Preprocess",
    "QATConfig",
    "QScheme",
    "RangeMethod",
    "Recipe",
    "Requantize",
]

RECIPE_VERSION: Final = 1

Mode = Literal["sym", "asym_u", "asym_s"]
Granularity = Literal["per_tensor", "per_channel"]
OptimizeFor = Literal["speed", "accuracy"]
WeightMethod = Literal["minmax", "mse"]
RangeMethod = Literal[
    "minmax", "avg", "ema", "n_std", "aciq_gauss", "aciq_laplace", "percentile", "entropy", "mse"
]
#: How a tensor's range trains in QAT (``qconvert.qat``); see ``QATConfig``.
QATActivationRanges = Literal["ema", "pact", "lsq"]
QATWeightRanges = Literal["minmax", "lsq"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QScheme(_Frozen):
    """How one kind of tensor (weights or activations) is represented in integers."""

    bits: int = Field(8, ge=2, le=16,
                      description="Integer bit width, 2-16. Below 8 bits is simulated inside int8 storage; above 8 uses int16.")
    mode: Mode = Field(
        "sym",
        description="sym: zero point 0, signed range; asym_u: unsigned range with a zero point; asym_s: signed range with a zero point.",
    )
    granularity: Granularity = Field(
        "per_tensor", description="per_channel applies to weights only (output-channel axis); activations are always per tensor."
    )
    power_of_two: bool = Field(False, description="Round scales up to a power of two (TIDL-style shift requantization).")


class CalibrationConfig(_Frozen):
    """How activation ranges are collected and chosen."""

    method: RangeMethod = Field("minmax", description="Range method for activations.")
    num_samples: int = Field(256, ge=1, description="Maximum number of calibration samples read from --calib-data.")
    batch_size: int = Field(32, ge=1, description="Batch size used for calibration and evaluation passes.")
    percentile: float = Field(99.99, gt=0.0, le=100.0, description="Percentile kept by method 'percentile'.")
    n_std: float = Field(3.0, gt=0.0, description="Multiplier k for method 'n_std' (mean +- k*std).")
    ema_decay: float = Field(0.9, gt=0.0, lt=1.0, description="Decay of the moving average for method 'ema'.")
    bins: Literal[256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536] = Field(
        4096, description="Histogram bins over the symmetric power-of-two range [-R, R) (a power of two, so shards merge exactly)."
    )
    hist_samples: int = Field(
        1 << 17, ge=0, description="Values per tensor per batch fed to the histogram and moments (a fixed stride sample; 0 = all). "
                                   "Min/max always see every value."
    )


class Requantize(_Frozen):
    """Requantization by an integer multiplier and a right shift, as integer kernels do it.

    A quantized conv/linear rescales its int32 accumulator by the ratio input scale x weight
    scale / output scale. Integer kernels hold that ratio as a signed fixed-point multiplier
    m (``multiplier_bits`` bits, normalised to [2**(bits-2), 2**(bits-1))) and a shift n:
    ratio ~= m * 2**-n. The approximation is folded into the weight scales (per channel), so
    the Q/DQ graph stays standard and the simulation computes with the approximated ratio.
    """

    multiplier_bits: int = Field(
        32, ge=8, le=32, description="Bits of the signed integer multiplier, sign included: 32 is TFLite's and gemmlowp's Q31 multiplier."
    )
    rounding: Literal["nearest", "floor"] = Field(
        "nearest", description="How the multiplier is taken from the exact ratio: nearest (TFLite's QuantizeMultiplier), or floor "
                               "(Distiller's truncation)."
    )
    arithmetic: Literal["auto", "float", "fp32", "gemmlowp"] = Field(
        "auto", description="What the simulation computes for these layers. auto: the arithmetic the target's runtime uses "
        "(tflite and onnx: fp32; elsewhere float). float: the Q/DQ graph in float32 (within a step of "
        "any integer kernel). fp32: the exact int32 accumulator requantized in float32 and rounded half to even, as XNNPACK "
        "(LiteRT's default CPU path) does. gemmlowp: the exact accumulator times TFLite's Q31 multiplier with its two "
        "roundings half away from zero, as TFLite's reference kernels and TFLite Micro do."
    )


class LayerOverride(_Frozen):
    """Per-layer settings; the first override whose pattern matches a module name wins.

    Precedence: an exact module name beats a glob; among globs, earlier entries win.
    """

    match: str = Field(..., min_length=1, description="Module name or glob (fnmatch) on module names, e.g. 'layer1.*.conv1'.")
    weights: QScheme | None = Field(None, description="Weight scheme for the matched layers.")
    activations: QScheme | None = Field(None, description="Activation scheme for the matched layers' outputs.")
    method: RangeMethod | None = Field(None, description="Range method for the matched layers' outputs.")
    dynamic: bool | None = Field(None, description="Dynamic quantization for the matched layers, overriding the recipe's 'dynamic'.")
    weight_method: WeightMethod | None = Field(None, description="Weight range method for the matched layers.")
    qat_activation_ranges: QATActivationRanges | None = Field(
        None, description="QAT: how the matched layers' output ranges train, overriding qat.activation_ranges."
    )
    qat_weight_ranges: QATWeightRanges | None = Field(None, description="QAT: how the matched layers' weight ranges train, overriding "
                                                                        "qat.weight_ranges.")
    requantize: Requantize | None = Field(None, description="Fixed-point requantization of the matched layers, overriding the recipe's "
                                                            "'requantize'.")
    accumulator_bits: int | None = Field(
        None, ge=8, le=64, description="Accumulator width of the matched layers, overriding the recipe's 'accumulator_bits'."
    )


class Preprocess(_Frozen):
    """How image files in a folder become model inputs (NCHW float32)."""

    size: tuple[int, int] = Field(..., description="Resize to (height, width).")
    mean: tuple[float, ...] = Field((0.0, 0.0, 0.0), description="Per-channel mean subtracted after scaling.")
    std: tuple[float, ...] = Field((1.0, 1.0, 1.0), description="Per-channel std divided by after mean subtraction.")
    scale: float = Field(1.0 / 255.0, gt=0.0, description="Multiplier applied to raw 0-255 pixel values first.")
    channel_order: Literal["rgb", "bgr", "gray"] = Field("rgb", description="Channel order of the model input.")

    @model_validator(mode="after")
    def _channels_agree(self) -> Preprocess:
        channels = 1 if self.channel_order == "gray" else 3
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"mean and std need {channels} values for channel_order '{self.channel_order}'")
        if any(s == 0 for s in self.std):
            raise ValueError("std values must be non-zero")
        return self


class Gates(_Frozen):
    """Limits a build must meet; checked against each artifact run in its own runtime."""

    max_accuracy_drop: float | None = Field(None, ge=0.0, description="Largest allowed float-minus-int8 accuracy drop, percentage points.")
    min_sqnr_db: float | None = Field(None, description="Smallest allowed SQNR of the artifact vs the float model, dB.")
    min_top1_agreement: float | None = Field(None, ge=0.0, le=1.0,
                                             description="Smallest allowed fraction of samples whose top-1 class matches float.")
    max_parity_lsb: float | None = Field(
        None, ge=0.0,
        description="Largest allowed artifact-vs-simulation error in output quantization steps; default: the target's declared tolerance."
    )


class AutoFallback(_Frozen):
    """Keep the most sensitive layers at higher precision, one at a time, until the gates pass.

    Layers are ranked once with the torch simulation (what each regains when kept alone at
    higher precision); each candidate is judged by the simulation against the gates, and the
    chosen one is built and checked in the runtime like any build.
    """

    metric: Literal["accuracy", "sqnr"] = Field(
        "sqnr", description="Ranking metric: accuracy (needs labelled --eval-data) or SQNR of the output vs float."
    )
    max_layers: int = Field(3, ge=1, le=64, description="Most layers kept at higher precision.")
    keep: Literal["float", "int16"] = Field(
        "float", description="float: the layer joins 'exclude'; int16: an override with 16-bit weights and activations (targets that run "
                             "int16 only)."
    )
    recipe_file: str = Field(
        "recipe.fallback.yaml", pattern=r"^[\w.-]+\.ya?ml$",
        description="Name, in OUT, of the recipe with the chosen layers written in (commit it)."
    )


class QATConfig(_Frozen):
    """Quantization-aware training with ``qconvert.qat.prepare``; post-training builds ignore it.

    Steps count training-mode forward passes of the prepared model.
    """

    activation_ranges: QATActivationRanges = Field(
        "lsq",
        description="How activation ranges train: ema (observed min/max, moving average, no gradient); pact (learnable clipping "
        "bounds, gradient from the clipped values only; with power_of_two scales this is TI's PACT2); lsq (learnable step size "
        "and offset with LSQ/LSQ+ gradients).",
    )
    weight_ranges: QATWeightRanges = Field(
        "minmax", description="minmax: each step quantizes the weights (BatchNorm folded in) over their current min/max, as a build does; "
                              "lsq: learnable per-channel step sizes."
    )
    freeze_bn_after: int | None = Field(
        None, ge=0, description="Steps after which BatchNorm statistics stop updating and folded convolutions use the running statistics; "
                                "null: never (eval mode always uses them)."
    )
    freeze_ranges_after: int | None = Field(None, ge=0, description="Steps after which ema ranges stop moving; null: never.")
    ema_decay: float = Field(0.99, gt=0.0, lt=1.0, description="Decay of the moving average behind ema ranges.")


class Recipe(_Frozen):
    """A complete quantization recipe, checked into the model's repository."""

    version: Literal[1] = Field(RECIPE_VERSION, description="Recipe format version.")
    input_shape: tuple[int, ...] | None = Field(
        None,
        description="Model input shape including the batch dimension (any value; the batch stays dynamic). Overridden by --input-shape."
    )
    weights: QScheme = Field(
        QScheme(bits=8, mode="sym", granularity="per_channel"), description="Default weight scheme."
    )
    activations: QScheme = Field(
        QScheme(bits=8, mode="asym_u", granularity="per_tensor"), description="Default activation scheme."
    )
    calibration: CalibrationConfig = Field(CalibrationConfig(), description="Calibration settings.")
    weight_method: WeightMethod = Field(
        "minmax",
        description="Weight ranges: minmax (max |w| per channel or tensor), or mse (the clip minimising each channel's squared error)."
    )
    equalization: bool = Field(
        False, description="Cross-layer equalization of conv pairs joined by ReLU before calibration (helps per-tensor weights of "
                           "depthwise-separable nets)."
    )
    bias_correction: bool | Literal["empirical", "analytic"] = Field(
        False, description="Bias correction after quantization (TIDL's advanced calibration). true or 'empirical': measured on "
        "bias_correction_samples calibration samples in two passes, layer by layer; 'analytic': from BatchNorm statistics, "
        "no data (Nagel et al.), weight error only, layers fed by a BatchNorm."
    )
    bias_correction_iters: int = Field(1, ge=1, le=50,
                                       description="Passes of empirical bias correction; later layers see earlier corrections.")
    bias_correction_samples: int = Field(
        128, ge=1, description="Calibration samples empirical bias correction measures on (memory grows with it, not with the data)."
    )
    weight_rounding: Literal["nearest", "adaround"] = Field(
        "nearest", description="How weights round to their integers: nearest, or adaround (learned per weight, layer by layer, "
        "so each conv/linear's output on adaround_samples calibration samples stays closest to float; runs before bias correction)."
    )
    adaround_samples: int = Field(64, ge=1, description="Calibration samples adaround learns on (memory grows with it, not with the data).")
    adaround_iterations: int = Field(300, ge=1, le=100000, description="Optimisation steps of adaround per layer (time grows with it).")
    adaround_target: Literal["network", "layer"] = Field(
        "network", description="What each layer's learned rounding reconstructs: network, the float network's own output at that layer "
        "(so the rounding also makes up for the error its quantized input brings from upstream); layer, the same layer with float "
        "weights on its quantized input."
    )
    activation_ranges: Literal["calibrated", "learned"] = Field(
        "calibrated", description="Activation ranges: calibrated (calibration.method and overrides), or learned (each tensor's "
        "calibrated range narrowed, tensor by tensor in graph order on activation_range_samples calibration samples, to the range "
        "whose quantized values are closest to the float network's own values there; runs before weight_rounding)."
    )
    activation_range_samples: int = Field(
        64, ge=1, description="Calibration samples learned activation ranges are chosen on (memory grows with it, not with the data)."
    )
    depthwise_per_channel: bool = Field(
        False, description="Per-channel weights for depthwise convolutions even when weights are per_tensor (TIDL's DW calibration)."
    )
    narrow_weights: bool = Field(
        True,
        description="Symmetric weights use the narrow range [-127, 127] (8 bits), as TensorRT and TFLite require; false: the full "
        "range [-128, 127], as torch.ao and PT2E weights train (set by imported builds; targets that need narrow weights adapt or refuse).",
    )
    dynamic: bool = Field(
        False,
        description="Dynamic quantization (Distiller's --qe-dynamic): Linear, LSTM/GRU and Embedding weights int8 per the 'weights' "
        "scheme, activations quantized per batch at run time (unsigned 8-bit, per tensor); other layers stay float. "
        "Overridable per layer with overrides[].dynamic.",
    )
    exclude: tuple[str, ...] = Field((), description="Module names or globs kept in float.")
    no_clip: tuple[str, ...] = Field((),
                                     description="Module names or globs whose output ranges always use min/max (e.g. the logits layer).")
    overrides: tuple[LayerOverride, ...] = Field((), description="Per-layer settings, matched on module names.")
    preprocess: Preprocess | None = Field(None, description="Preprocessing for image-folder data.")
    targets: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-target options, keyed by target name; each target validates its own section."
    )
    optimize_for: OptimizeFor | dict[str, OptimizeFor] | None = Field(
        None,
        description="What to optimise for where speed and accuracy pull apart: 'speed' gives schemes left at their defaults the "
        "types the target's device runs fastest (onnxruntime x86: uint8 activations, int8 weights) and quantizes every op the "
        "runtime has an integer kernel for; 'accuracy' gives them the most accurate types the target can represent and keeps "
        "mul, pools and concat float. A mapping sets it per target (e.g. {onnx: speed, tflite: accuracy}); null or a target "
        "left out: that target's default for its device (see 'qconvert targets'). Schemes the recipe sets explicitly are kept.",
    )
    on_unsupported: Literal["error", "adapt"] = Field(
        "error", description="When a target cannot represent a requested scheme: refuse the build, or adapt the scheme with a warning."
    )
    gates: Gates = Field(Gates(), description="Gates applied to every target.")
    target_gates: dict[str, Gates] = Field(default_factory=dict,
                                           description="Gates for one target, replacing the global ones field by field.")
    auto_fallback: AutoFallback | None = Field(
        None, description="When gates fail with plain PTQ, keep the most sensitive layers at higher precision until they pass."
    )
    qat: QATConfig = Field(QATConfig(),
                           description="Quantization-aware training settings (qconvert.qat.prepare); unused by post-training builds.")
    quantize_only: Literal["weights", "activations"] | None = Field(
        None,
        description="Static quantization of one kind of tensor only: 'weights' (weight-only: integer weights behind a "
        "dequantize, float activations; Distiller's --qe-bits-acts 0) or 'activations' (float weights; --qe-bits-wts 0). "
        "'weights: null' / 'activations: null' say the same. Targets that cannot run it refuse with one line.",
    )
    requantize: Requantize | None = Field(
        None,
        description="Approximate every conv/linear requantization ratio by an integer multiplier and a shift; null: exact float ratios."
    )
    compare_precision: tuple[int, ...] | None = Field(
        None,
        min_length=2,
        description="Activation bit widths to build side by side, e.g. [8, 16] (TI: 'if 8 bits loses accuracy, check 16 bits'): "
        "each width is quantized from the same statistics, emitted under OUT/precision/a<bits>/ and verified; the report "
        "compares them per target. Gates judge the recipe's own build only. --compare-precision overrides it.",
    )
    accumulator_bits: int | None = Field(
        None,
        ge=8,
        le=64,
        description="Accumulator width of the device's conv/linear kernels. The build measures, on the calibration data, the widest "
        "partial sum of every layer in the simulation; a layer that needs more bits fails the build (exit 3), named in the report. "
        "null: not checked.",
    )

    @model_validator(mode="before")
    @classmethod
    def _null_scheme_means_quantize_only(cls, data: Any) -> Any:
        # 'activations: null' is weight-only, 'weights: null' activation-only (sugar for quantize_only)
        if not isinstance(data, dict):
            return data
        nulls = [k for k in ("weights", "activations") if k in data and data[k] is None]
        if len(nulls) == 2:
            raise ValueError("weights and activations cannot both be null: nothing would be quantized")
        if nulls:
            only = "activations" if nulls[0] == "weights" else "weights"
            if data.get("quantize_only") not in (None, only):
                raise ValueError(f"{nulls[0]}: null contradicts quantize_only: {data['quantize_only']}")
            data = {k: v for k, v in data.items() if k != nulls[0]} | {"quantize_only": only}
        return data

    @field_validator("optimize_for", mode="before")
    @classmethod
    def _one_clear_optimize_for_error(cls, value: Any) -> Any:
        # checked here so a wrong value gives one message, not one per member of the union type
        choices = ("speed", "accuracy")
        if value is None or value in choices:
            return value
        if isinstance(value, dict):
            for target, choice in value.items():
                if choice not in choices:
                    raise ValueError(f"'{target}: {choice}': each target takes 'speed' or 'accuracy'")
            return value
        raise ValueError(f"'{value}': must be 'speed', 'accuracy', or a mapping of target names to those")

    def optimize_for_target(self, target: str) -> OptimizeFor | None:
        """The recipe's choice for one target, or None where the target's default applies."""
        if isinstance(self.optimize_for, dict):
            return self.optimize_for.get(target)
        return self.optimize_for

    @field_validator("compare_precision")
    @classmethod
    def _widths_in_range(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and any(not 2 <= b <= 16 for b in value):
            raise ValueError(f"{list(value)}: activation widths are 2-16 bits")
        return value

    @model_validator(mode="after")
    def _activations_per_tensor(self) -> Recipe:
        if self.activations.granularity != "per_tensor":
            raise ValueError("activations.granularity must be per_tensor (per-channel activations are not supported by the runtimes)")
        return self
