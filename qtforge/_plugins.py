"""Plugins: any object whose methods a workflow step may call, kept by a `PluginManager`."""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Awaitable
from importlib.metadata import EntryPoint, entry_points

from ._errors import Expected, PluginError, PluginErrorCode

__all__ = ["ENTRY_POINT_GROUP", "Plugin", "PluginManager"]

ENTRY_POINT_GROUP = "qtforge.plugins"

_log = logging.getLogger("qtforge.plugins")


class Plugin:
    """Optional base class for plugins.

    Any object can be a plugin; this base only documents the protocol. Set `plugin_id`
    (or ``id`` / ``name``) to give instances an id, and override the lifecycle hooks if
    the plugin holds resources. Either hook may be ``async def``.
    """

    plugin_id: str = ""

    def initialize(self) -> Awaitable[None] | None:
        """Called once, before the first step that uses this plugin runs."""
        return None

    def shutdown(self) -> Awaitable[None] | None:
        """Called once, when the orchestrator that initialized the plugin closes."""
        return None


def plugin_id_of(plugin: object) -> str | None:
    """The id a plugin declares through its ``plugin_id``, ``id`` or ``name`` attribute."""
    for attribute in ("plugin_id", "id", "name"):
        value = getattr(plugin, attribute, None)
        if isinstance(value, str) and value:
            return value
    return None


class PluginManager:
    """A thread-safe registry of plugins, keyed by id.

    Args:
        discover: Also register the plugins that installed distributions advertise in
            the ``qtforge.plugins`` entry-point group (see `discover_plugins`).
    """

    def __init__(self, *, discover: bool = False) -> None:
        self._plugins: dict[str, object] = {}
        self._lock = threading.Lock()
        if discover:
            self.discover_plugins()

    def register_plugin(
        self, plugin: object, plugin_id: str | None = None
    ) -> Expected[str, PluginError]:
        """Register `plugin` under `plugin_id`, or under the id the plugin declares.

        Returns:
            The id it was registered under; ``InvalidArgument`` when no id can be found,
            ``DuplicatePlugin`` when the id is taken.
        """
        if plugin_id is not None and not isinstance(plugin_id, str):
            raise TypeError(f"plugin_id must be a str, not {type(plugin_id).__name__}")
        if plugin is None:
            return Expected.fail(PluginErrorCode.InvalidArgument, "None is not a plugin")
        if plugin_id == "":
            return Expected.fail(PluginErrorCode.InvalidArgument, "plugin_id must not be empty")
        key = plugin_id or plugin_id_of(plugin)
        if not key:
            return Expected.fail(
                PluginErrorCode.InvalidArgument,
                f"plugin {plugin!r} has no id: pass plugin_id= or give it a "
                "'plugin_id', 'id' or 'name' attribute",
            )
        with self._lock:
            if key in self._plugins:
                return Expected.fail(
                    PluginErrorCode.DuplicatePlugin,
                    f"a plugin with id {key!r} is already registered",
                )
            self._plugins[key] = plugin
        return Expected.ok(key)

    def unregister_plugin(self, plugin_id: str) -> Expected[None, PluginError]:
        """Remove a plugin; ``PluginNotFound`` if there is none with that id."""
        with self._lock:
            if self._plugins.pop(plugin_id, None) is None:
                return Expected.fail(self._not_found(plugin_id))
        return Expected.ok(None)

    def get_plugin(self, plugin_id: str) -> Expected[object, PluginError]:
        """The plugin registered under `plugin_id`, or ``PluginNotFound``."""
        plugin = self._plugins.get(plugin_id)
        if plugin is None:
            return Expected.fail(self._not_found(plugin_id))
        return Expected.ok(plugin)

    def has_plugin(self, plugin_id: str) -> bool:
        return plugin_id in self._plugins

    def list_plugins(self) -> list[str]:
        """The registered ids, in registration order."""
        return list(self._plugins)

    def load_plugin(
        self, reference: str, plugin_id: str | None = None
    ) -> Expected[str, PluginError]:
        """Import ``"package.module:attribute"`` and register what it names.

        A class is instantiated with no arguments; any other object is used as it is.
        The id is `plugin_id`, else the one the plugin declares.
        """
        if not isinstance(reference, str):
            raise TypeError(f"reference must be a str, not {type(reference).__name__}")
        module_name, colon, attribute = reference.partition(":")
        if not colon or not module_name or not attribute:
            return Expected.fail(
                PluginErrorCode.InvalidArgument,
                f"plugin reference {reference!r} is not of the form 'package.module:attribute'",
            )
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            return Expected.fail(
                PluginErrorCode.LoadFailed, f"cannot import module {module_name!r}", repr(exc)
            )
        target: object = module
        for part in attribute.split("."):
            if not hasattr(target, part):
                return Expected.fail(
                    PluginErrorCode.SymbolNotFound,
                    f"module {module_name!r} has no attribute {attribute!r}",
                )
            target = getattr(target, part)
        built = _instantiate(target, reference)
        if not built:
            return Expected.fail(built.error())
        return self.register_plugin(built.value(), plugin_id)

    def discover_plugins(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Register the plugins advertised by installed distributions.

        Each entry point's name is the plugin's id. Ids that are already registered keep
        their plugin. An entry point that fails to load is skipped with a warning on the
        ``qtforge.plugins`` logger, so one broken distribution cannot hide the others.

        Returns:
            The ids registered by this call.
        """
        found: list[str] = []
        for entry_point in entry_points(group=group):
            if self.has_plugin(entry_point.name):
                continue
            loaded = _load_entry_point(entry_point)
            if not loaded:
                _log.warning("skipping plugin entry point %r: %s", entry_point.name, loaded.error())
                continue
            if self.register_plugin(loaded.value(), entry_point.name):
                found.append(entry_point.name)
        return found

    @staticmethod
    def _not_found(plugin_id: str) -> PluginError:
        return PluginError(PluginErrorCode.PluginNotFound, f"no plugin with id {plugin_id!r}")

    def __repr__(self) -> str:
        return f"<PluginManager plugins={self.list_plugins()!r}>"


def _load_entry_point(entry_point: EntryPoint) -> Expected[object, PluginError]:
    try:
        target = entry_point.load()
    except Exception as exc:
        return Expected.fail(
            PluginErrorCode.LoadFailed,
            f"cannot load {entry_point.value!r} for plugin {entry_point.name!r}",
            repr(exc),
        )
    return _instantiate(target, entry_point.value)


def _instantiate(target: object, reference: str) -> Expected[object, PluginError]:
    if not isinstance(target, type):
        return Expected.ok(target)
    try:
        return Expected.ok(target())
    except Exception as exc:
        return Expected.fail(
            PluginErrorCode.InitializationFailed,
            f"cannot instantiate plugin class {reference!r} with no arguments",
            repr(exc),
        )
