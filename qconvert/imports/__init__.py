"""Bring your own QAT: import the quantization of models prepared or trained with torch.ao,
torchao PT2E, NVIDIA ModelOpt (and pytorch-quantization state dicts) and Brevitas, and
Distiller statistics files. No tool is imported until a model needs it."""
