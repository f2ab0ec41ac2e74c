"""TI's documented option names, transcribed for the tests (not imported from the code under test).

Sources: edgeai-tidl-tools docs/model_compilation.md (tables "General Options",
"Quantization Specific Options", "Multi Subgraph Specific Options"), and the
legacy import keys of TI's TIDL-RT importer guide / TIDLRT_CompileSession_Options.
"""

OSRT_OPTIONS = {
    "tidl_tools_path", "artifacts_folder", "debug_level", "tensor_bits", "accuracy_level",
    "advanced_options:add_data_convert_ops", "advanced_options:calibration_frames", "advanced_options:calibration_iterations",
    "advanced_options:quantization_scale_type", "advanced_options:mixed_precision_factor",
    "advanced_options:output_feature_16bit_names_list", "advanced_options:params_16bit_names_list",
    "advanced_options:activation_clipping", "advanced_options:weight_clipping", "advanced_options:bias_calibration",
    "advanced_options:channel_wise_quantization", "advanced_options:quant_params_proto_path",
    "advanced_options:prequantized_model", "max_num_subgraphs", "deny_list:layer_type", "deny_list:layer_name",
    "allow_list:layer_name",
}
TVM_KWARGS = {"platform", "tidl_tools_path", "artifacts_folder", "tensor_bits", "debug_level", "accuracy_level",
              "advanced_options", "max_num_subgraphs"}
LEGACY_KEYS = {
    "modelType", "inputNetFile", "outputNetFile", "outputParamsFile", "numParamBits", "numFeatureBits", "quantizationStyle",
    "calibrationOption", "inDataNorm", "inMean", "inScale", "inDataFormat", "inWidth", "inHeight", "inNumChannels",
    "inElementType", "inData", "inFileFormat", "numFrames", "outputFeature16bitNamesList", "params16bitNamesList",
}


def parse_import_config(text: str) -> dict[str, str]:
    """``key = value`` lines (comments with #) into a dict, quotes stripped."""
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, value = (p.strip() for p in line.split("=", 1))
            out[key] = value.strip('"')
    return out
