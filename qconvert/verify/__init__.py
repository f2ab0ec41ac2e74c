"""Verification: metrics, gates, reports, per-layer figures and the torch-free on-device check.

The package is callable: ``qconvert.verify(artifact_dir)`` is ``qconvert.api.verify``.
"""

from qconvert.callable_package import make_callable

make_callable(__name__, "verify")
