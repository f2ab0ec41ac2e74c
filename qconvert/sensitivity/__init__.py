"""Per-layer sensitivity with the torch simulation, and the automatic fallback built on it."""
