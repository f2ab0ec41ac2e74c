"""Helpers any target plugin's tests can reuse (the conformance kit grows here)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["digits_build_args", "digits_paths"]


def digits_paths(root: Path) -> dict[str, Path]:
    d = root / "samples" / "digits"
    return {"model": d / "model.py", "weights": d / "weights.pt", "recipe": d / "recipe.yaml",
            "calib": d / "calib.npz", "eval": d / "eval.npz"}


def digits_build_args(d: dict[str, Path], out: Path, *targets: str) -> list[str]:
    """CLI arguments of a `qconvert build` of the digits sample."""
    args = ["build", "--model", f"{d['model']}:build", "--weights", str(d["weights"]), "--recipe", str(d["recipe"]),
            "--calib-data", str(d["calib"]), "--eval-data", str(d["eval"]), "--out", str(out)]
    for t in targets:
        args += ["--target", t]
    return args
