"""Find target plugins through the ``qconvert.targets`` entry-point group.

Built-in targets register exactly like third-party ones. Plugins are imported
only when asked for, so ``qconvert --help`` imports no runtime.
"""

from __future__ import annotations

import os
from importlib.metadata import EntryPoint, entry_points

from qconvert.errors import BadInputError, PluginError, did_you_mean
from qconvert.targets.base import Target

__all__ = ["AUTOLOAD_ENV", "ENTRY_POINT_GROUP", "TargetRegistry"]

ENTRY_POINT_GROUP = "qconvert.targets"
AUTOLOAD_ENV = "QCONVERT_DISABLE_PLUGIN_AUTOLOAD"


class TargetRegistry:
    """The targets known to one CLI invocation or API caller."""

    def __init__(self, autoload: bool | None = None) -> None:
        if autoload is None:
            autoload = not os.environ.get(AUTOLOAD_ENV)
        self._entry_points: dict[str, EntryPoint] = {}
        self._loaded: dict[str, Target] = {}
        if autoload:
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                self._entry_points.setdefault(ep.name, ep)

    def register(self, target: Target) -> None:
        self._loaded[target.name] = target

    def names(self) -> list[str]:
        return sorted(self._entry_points.keys() | self._loaded.keys())

    def get(self, name: str) -> Target:
        if name in self._loaded:
            return self._loaded[name]
        ep = self._entry_points.get(name)
        if ep is None:
            known = self.names()
            raise BadInputError(
                f"unknown target '{name}'{did_you_mean(name, known)}; installed targets: {', '.join(known) or 'none'}"
            )
        try:
            cls = ep.load()
            target = cls() if isinstance(cls, type) else cls
        except Exception as e:
            raise PluginError(f"target plugin '{name}' ({ep.value}) is broken: {type(e).__name__}: {e}") from e
        if not isinstance(target, Target):
            raise PluginError(f"target plugin '{name}' ({ep.value}) does not provide a qconvert.targets.base.Target")
        self._loaded[name] = target
        return target

    def origin(self, name: str) -> str:
        ep = self._entry_points.get(name)
        if ep is None:
            return "registered in process"
        dist = getattr(ep, "dist", None)
        return f"{dist.name} {dist.version}" if dist is not None else ep.value
