"""Plugin discovery: the entry-point group ``labeler.plugins`` of installed distributions, nothing else.

An entry point names a class or a zero-argument factory; :func:`discover` calls it and checks the
result against :class:`labeler.learning.api.Plugin`. A plugin that fails to load is reported with
its name and the reason (:func:`load_errors`) and does not keep the others from loading.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from labeler.learning.api import ENTRY_POINT_GROUP, Plugin, PluginError, Setting

REQUIRED_ATTRIBUTES = ("name", "task", "metric", "settings")
REQUIRED_METHODS = ("build_model", "prepare", "example", "losses", "inputs", "proposals", "evaluate")
TASKS = ("segmentation", "localization", "detection")
"""What a plugin may propose: masks, one box per image, or a box per object."""


@dataclass(frozen=True)
class LoadError:
    """A plugin that could not be loaded: the entry point's name, where it points, and why."""

    name: str
    value: str
    reason: str


_errors: list[LoadError] = []

T = TypeVar("T")


def plugin_call(
    plugin: Plugin | str,
    what: str,
    fn: Callable[[], T],
    *,
    passthrough: tuple[type[BaseException], ...] = (),
    where: str = "",
) -> T:
    """``fn()``, a call into a plugin: anything it raises becomes a :class:`PluginError` that names the
    plugin and ``what`` raised (``where`` is appended, e.g. `` (image 7)``). A ``PluginError`` and the
    exception types in ``passthrough`` (for example ``MemoryError``, which is no fault of the plugin)
    pass unchanged."""
    try:
        return fn()
    except PluginError:
        raise
    except passthrough:
        raise
    except Exception as exc:
        name = plugin if isinstance(plugin, str) else plugin.name
        raise PluginError(name, f"{what} raised {type(exc).__name__}: {exc}{where}") from exc


def _check(plugin: object, name: str) -> Plugin:
    """``plugin`` as a :class:`Plugin` when it keeps the interface; else ``TypeError`` saying how not."""
    for attr in REQUIRED_ATTRIBUTES + REQUIRED_METHODS:
        if not hasattr(plugin, attr):
            raise TypeError(f"it has no {attr!r}")
    for method in REQUIRED_METHODS:
        if not callable(getattr(plugin, method)):
            raise TypeError(f"{method!r} is not callable")
    if not isinstance(plugin, Plugin):  # true after the checks above; narrows the type
        raise TypeError("it does not implement labeler.learning.api.Plugin")
    if plugin.name != name:
        raise TypeError(f"its name {plugin.name!r} differs from the entry point's name {name!r}")
    if plugin.task not in TASKS:
        raise TypeError(f"task must be one of {', '.join(TASKS)}, not {plugin.task!r}")
    settings = plugin.settings
    if not isinstance(settings, tuple) or not all(isinstance(s, Setting) for s in settings):
        raise TypeError("settings must be a tuple of labeler.learning.api.Setting")
    return plugin


def discover() -> dict[str, Plugin]:
    """Installed plugins by name, sorted by name. Failures are kept in :func:`load_errors`.

    When two distributions register the same name, the first one found wins and the other is
    reported as a load error.
    """
    _errors.clear()
    found: dict[str, Plugin] = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in found:
            if getattr(type(found[entry.name]), "__module__", "").split(".")[0] != entry.module.split(".")[0]:
                _errors.append(LoadError(entry.name, entry.value, "another installed plugin has the same name"))
            continue
        try:
            factory = entry.load()
            plugin = _check(factory() if callable(factory) else factory, entry.name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not hide the others
            _errors.append(LoadError(entry.name, entry.value, f"{type(exc).__name__}: {exc}"))
            continue
        found[entry.name] = plugin
    return dict(sorted(found.items()))


def load_errors() -> list[LoadError]:
    """Plugins the last :func:`discover` could not load."""
    return list(_errors)


def get_plugin(name: str) -> Plugin:
    """The installed plugin called ``name``; the error lists what is installed (and what failed)."""
    plugins = discover()
    if name in plugins:
        return plugins[name]
    for error in _errors:
        if error.name == name:
            raise PluginError(name, f"could not be loaded ({error.reason})")
    known = ", ".join(plugins) or "none"
    raise PluginError(name, f"is not installed (installed plugins: {known}; see 'labeler plugins')")
