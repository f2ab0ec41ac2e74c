"""Find target plugins through the ``qconvert.targets`` entry-point group.

Built-in targets register exactly like third-party ones. Plugins are imported
only when asked for, so ``qconvert --help`` imports no runtime. Each plugin is
validated when it is loaded (``validate``), and a target name that two
distributions register is refused when the registry is built, naming both.
"""

from __future__ import annotations

import os
from importlib.metadata import EntryPoint, entry_points

from pydantic import BaseModel

from qconvert.errors import BadInputError, PluginConflictError, PluginError, did_you_mean
from qconvert.targets.base import API_VERSION, Target

__all__ = ["AUTOLOAD_ENV", "ENTRY_POINT_GROUP", "TargetRegistry", "validate"]

ENTRY_POINT_GROUP = "qconvert.targets"
AUTOLOAD_ENV = "QCONVERT_DISABLE_PLUGIN_AUTOLOAD"


class TargetRegistry:
    """The targets known to one CLI invocation or API caller.

    Raises:
        PluginConflictError: two installed distributions register the same target name.
    """

    def __init__(self, autoload: bool | None = None) -> None:
        if autoload is None:
            autoload = not os.environ.get(AUTOLOAD_ENV)
        self._entry_points: dict[str, EntryPoint] = {}
        self._loaded: dict[str, Target] = {}
        if autoload:
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                seen = self._entry_points.setdefault(ep.name, ep)
                if seen is not ep and (seen.value, _distribution(seen)) != (ep.value, _distribution(ep)):
                    raise PluginConflictError(
                        f"target '{ep.name}' is registered twice: by {_distribution(seen)} ({seen.value}) and by "
                        f"{_distribution(ep)} ({ep.value}); uninstall one of them (pip uninstall <distribution>)")

    def register(self, target: Target) -> None:
        """Add a target built in this process (tests, the Python API); it is validated like a plugin.

        Raises:
            PluginError: the target breaks the plugin contract (see ``validate``).
            PluginConflictError: a target of that name is already known.
        """
        validate(target, target.name, "registered in process")
        if target.name in self._loaded or target.name in self._entry_points:
            raise PluginConflictError(f"target '{target.name}' is registered twice: by {self.origin(target.name)} and in process")
        self._loaded[target.name] = target

    def names(self) -> list[str]:
        return sorted(self._entry_points.keys() | self._loaded.keys())

    def get(self, name: str) -> Target:
        """The target ``name``, its plugin imported and validated on first use.

        Raises:
            BadInputError: no such target (with close names).
            PluginError: the plugin does not import or breaks the plugin contract.
        """
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
        validate(target, name, f"{_distribution(ep)}, {ep.value}")
        self._loaded[name] = target
        return target

    def origin(self, name: str) -> str:
        ep = self._entry_points.get(name)
        return _distribution(ep) if ep is not None else "registered in process"


def validate(target: object, name: str, where: str) -> None:
    """Check one plugin against the contract of ``qconvert.targets.Target``.

    The entry-point ``name`` must equal ``Target.name`` (recipes, reports and OUT use it), ``Options``
    must refuse unknown keys (a misspelt option is an error, not ignored), and ``api_version`` must
    equal ``API_VERSION``.

    Raises:
        PluginError: naming the plugin, where it comes from, and every rule it breaks.
    """
    if not isinstance(target, Target):
        raise PluginError(f"target plugin '{name}' ({where}) does not provide a qconvert.targets.Target")
    broken = []
    if getattr(target, "name", None) != name:
        broken.append(f"its Target.name is {getattr(target, 'name', None)!r}, not the entry-point name {name!r}")
    options = getattr(target, "Options", None)
    if not (isinstance(options, type) and issubclass(options, BaseModel) and options.model_config.get("extra") == "forbid"):
        broken.append("its Options must refuse unknown keys (subclass qconvert.targets.TargetOptions, extra='forbid')")
    version = getattr(target, "api_version", None)
    if version != API_VERSION:
        said = "declares no api_version" if version is None else f"is written for plugin API version {version}"
        broken.append(f"it {said}, and this qconvert implements version {API_VERSION} (qconvert.targets.API_VERSION)")
    if broken:
        raise PluginError(f"target plugin '{name}' ({where}) is broken: {'; '.join(broken)}")


def _distribution(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else ep.value
