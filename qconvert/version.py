"""The qconvert version, importable by any module without importing the package's lazy API facade."""

__all__ = ["__version__"]

__version__ = "0.1.0"
