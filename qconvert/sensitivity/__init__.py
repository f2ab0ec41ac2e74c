"""Per-layer sensitivity with the torch simulation, and the automatic fallback built on it.

The package is callable: ``qconvert.sensitivity(model, recipe, eval_data)`` is ``qconvert.api.sensitivity``.
"""

from qconvert.callable_package import make_callable

make_callable(__name__, "sensitivity")
