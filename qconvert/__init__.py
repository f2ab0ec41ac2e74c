"""qconvert: one recipe, one calibration, int8 artifacts for every runtime, each verified."""
__version__ = "0.1.0"
__all__ = ["__version__"]
