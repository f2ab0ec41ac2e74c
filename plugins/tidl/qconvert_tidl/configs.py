"""TIDL's import config (legacy tool) and compile options (ONNX Runtime, TFLite, TVM/DLR).

Every name and value is TI's, with its source:

* legacy import config keys (``key = value``, run as ``tidl_model_import.out``):
  TI's TIDL-RT user guide, "TIDL-RT Importer" (md_tidl_model_import.html);
  ``quantizationStyle = 3`` is power-of-two (TIDL_QuantStyleP2Dynamic) and
  ``calibrationOption = 64`` trusts the model's ranges, the settings for QAT
  models (edgeai-modeloptimization ``v1/docs/qat.md``); element types are
  TIDL's eTIDL_ElementType (0 uint8, 1 int8, 6 float32, ``itidl_ti.h``);
* open-source runtime options: edgeai-tidl-tools ``docs/model_compilation.md``
  ("Quantization Specific Options", "Multi Subgraph Specific Options") and
  ``docs/tidl_fsg_quantization.md``; the TVM form (``advanced_options`` as a
  dictionary without the prefix) follows
  ``examples/osrt_python/tvm_dlr/tvm_compilation_onnx_example.py``. TI's option
  translator (``TIDLRT_CompileSession_Options``) maps ``accuracy_level`` to
  ``calibrationOption``, ``advanced_options:quantization_scale_type`` to
  ``quantizationStyle`` and ``tensor_bits`` to ``numParamBits``/``numFeatureBits``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CALIB_OPTION_PER_CHANNEL",
    "CALIB_OPTION_RANGES_FROM_MODEL",
    "MODEL_TYPE_ONNX",
    "QUANT_STYLE_P2",
    "InputSpec",
    "TidlConfig",
    "import_config_text",
    "osrt_options",
    "tvm_options",
]

MODEL_TYPE_ONNX = 2  # modelType: 0 Caffe, 1 TensorFlow, 2 ONNX, 3 TFLite
QUANT_STYLE_P2 = 3  # quantizationStyle 3: power-of-2 scales (TIDL_QuantStyleP2Dynamic)
CALIB_OPTION_RANGES_FROM_MODEL = 64  # calibrationOption flag 64: ranges/bias from the model (QAT import)
CALIB_OPTION_PER_CHANNEL = 8  # calibrationOption flag 8: per-channel weights (depthwise on TDA4VM)
ELEMENT_UINT8, ELEMENT_FLOAT = 0, 6  # eTIDL_ElementType
SCALE_TYPE_P2 = 1  # advanced_options:quantization_scale_type 1: power-of-2
ACCURACY_BASIC = 0  # accuracy_level 0: simple calibration (legacy calibrationOption 64)
ACCURACY_USER_FLAGS = 9  # accuracy_level 9: the advanced_options flags below decide


@dataclass(frozen=True)
class InputSpec:
    """The model input as TIDL's importer describes it (NCHW, one input)."""

    name: str
    channels: int
    height: int
    width: int
    #: Pixel normalization (pixel - mean) * scale per channel; None: the input is already float.
    mean: tuple[float, ...] | None = None
    scale: tuple[float, ...] | None = None
    rgb: bool = True


@dataclass(frozen=True)
class TidlConfig:
    """Everything the configs say, resolved from the recipe, the options and the model."""

    input: InputSpec
    param_bits: int
    feature_bits: int
    per_channel_depthwise: bool
    onnx_file: str
    tflite_file: str | None
    calib_file: str
    calib_frames: int
    features_16bit: tuple[str, ...] = ()
    params_16bit: tuple[str, ...] = ()
    deny_layer_types: tuple[str, ...] = ()
    deny_layer_types_tflite: tuple[int, ...] = ()
    deny_layer_names: tuple[str, ...] = ()

    @property
    def tensor_bits(self) -> int:
        return self.feature_bits

    @property
    def calibration_option(self) -> int:
        flags = CALIB_OPTION_RANGES_FROM_MODEL
        return flags | CALIB_OPTION_PER_CHANNEL if self.per_channel_depthwise else flags


def import_config_text(cfg: TidlConfig, header: str) -> str:
    """The legacy import config, ``key = value`` lines with comments."""
    i = cfg.input
    lines = [f"# {line}" for line in header.splitlines()] + [
        "# Run from ti_dl/utils/tidlModelImport:  ./out/tidl_model_import.out <this file>",
        "# Ranges come from the Clip operators of the model (quantizationStyle 3 + calibrationOption 64).",
        f"modelType          = {MODEL_TYPE_ONNX}",
        f'inputNetFile       = "{cfg.onnx_file}"',
        'outputNetFile      = "tidl_net.bin"',
        'outputParamsFile   = "tidl_io_"',
        f"numParamBits       = {cfg.param_bits}",
        f"numFeatureBits     = {cfg.feature_bits}",
        f"quantizationStyle  = {QUANT_STYLE_P2}",
        f"calibrationOption  = {cfg.calibration_option}",
    ]
    if i.mean is not None and i.scale is not None:
        lines += [
            "inDataNorm         = 1",
            f"inMean             = {' '.join(_num(m) for m in i.mean)}",
            f"inScale            = {' '.join(_num(s) for s in i.scale)}",
            f"inDataFormat       = {1 if i.rgb else 0}",
            f"inElementType      = {ELEMENT_UINT8}",
        ]
    else:
        lines += ["inDataNorm         = 0", f"inElementType      = {ELEMENT_FLOAT}"]
    lines += [
        f"inWidth            = {i.width}",
        f"inHeight           = {i.height}",
        f"inNumChannels      = {i.channels}",
        f'inData             = "{cfg.calib_file}"',
        "inFileFormat       = 1",
        f"numFrames          = {cfg.calib_frames}",
    ]
    if cfg.features_16bit:
        lines.append(f'outputFeature16bitNamesList = "{", ".join(cfg.features_16bit)}"')
    if cfg.params_16bit:
        lines.append(f'params16bitNamesList = "{", ".join(cfg.params_16bit)}"')
    return "\n".join(lines) + "\n"


def _num(v: float) -> str:
    return f"{v:.9g}"


def _common(cfg: TidlConfig) -> dict[str, int | str]:
    opts: dict[str, int | str] = {
        "tensor_bits": cfg.tensor_bits,
        "debug_level": 0,
        "advanced_options:calibration_frames": cfg.calib_frames,
    }
    if cfg.per_channel_depthwise:
        # Per-channel weights exist only as a user flag of accuracy_level 9; every other
        # calibration feature is switched off so the Clip ranges stay in charge.
        opts.update({
            "accuracy_level": ACCURACY_USER_FLAGS,
            "advanced_options:quantization_scale_type": SCALE_TYPE_P2,
            "advanced_options:activation_clipping": 0,
            "advanced_options:weight_clipping": 0,
            "advanced_options:bias_calibration": 0,
            "advanced_options:channel_wise_quantization": 1,
        })
    else:
        opts.update({"accuracy_level": ACCURACY_BASIC, "advanced_options:quantization_scale_type": SCALE_TYPE_P2})
    if cfg.features_16bit:
        opts["advanced_options:output_feature_16bit_names_list"] = ", ".join(cfg.features_16bit)
    if cfg.params_16bit:
        opts["advanced_options:params_16bit_names_list"] = ", ".join(cfg.params_16bit)
    if cfg.deny_layer_names:
        opts["deny_list:layer_name"] = ", ".join(cfg.deny_layer_names)
    return opts


def osrt_options(cfg: TidlConfig, runtime: str) -> dict[str, int | str]:
    """Flat provider/delegate options for ``onnxrt`` or ``tflitert``.

    ``tidl_tools_path`` is written as ``${TIDL_TOOLS_PATH}``: the compile
    scripts expand it, as TI's examples read it from the environment.
    """
    opts: dict[str, int | str] = {"tidl_tools_path": "${TIDL_TOOLS_PATH}", "artifacts_folder": f"artifacts/{runtime}"}
    opts.update(_common(cfg))
    if runtime == "onnxrt" and cfg.deny_layer_types:
        opts["deny_list:layer_type"] = ", ".join(cfg.deny_layer_types)
    if runtime == "tflitert" and cfg.deny_layer_types_tflite:
        opts["deny_list:layer_type"] = ", ".join(str(c) for c in cfg.deny_layer_types_tflite)
    return opts


def tvm_options(cfg: TidlConfig, soc: str) -> dict[str, object]:
    """Arguments of ``tidl.TIDLCompiler``: ``advanced_options`` is a dictionary without the prefix.

    ``platform`` is the SOC, passed first as TI's example passes ``os.environ["SOC"]``.
    TVM partitions by supported ops; TI documents no deny list for it.
    """
    flat = _common(cfg)
    advanced = {k.split(":", 1)[1]: v for k, v in flat.items() if k.startswith("advanced_options:")}
    return {
        "platform": soc,
        "tidl_tools_path": "${TIDL_TOOLS_PATH}",
        "artifacts_folder": "artifacts/tvmdlr",
        "tensor_bits": cfg.tensor_bits,
        "debug_level": 0,
        "accuracy_level": flat["accuracy_level"],
        "advanced_options": advanced,
    }
