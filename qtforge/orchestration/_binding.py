"""From a step to a call: find the plugin method and bind the step's inputs to it.

A method's signature is inspected once and cached (`BinderCache`); binding a step is
then a few dictionary lookups.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .._errors import PluginError, PluginErrorCode
from .._plugins import PluginManager
from ._context import StepContext

__all__ = ["Binder", "BinderCache", "resolve"]


@attrs.frozen
class Binder:
    """How to call one plugin method with a step's input mapping.

    Attributes:
        is_async: The method is a coroutine function (runs on the event loop).
        wants_context: Some parameter receives the `StepContext`.
    """

    where: str
    is_async: bool
    positional: tuple[str, ...]
    keywords: tuple[str, ...]
    required: frozenset[str]
    context_name: str | None
    takes_var_keyword: bool
    command: str | None = None

    @property
    def wants_context(self) -> bool:
        return self.context_name is not None

    def bind(
        self, inputs: Mapping[str, Any], context: StepContext | None
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The ``(args, kwargs)`` for one call.

        Raises:
            PluginError: ``InvalidParameters`` naming a required parameter that has no
                value, and the keys that were available.
        """
        if self.command is not None:
            return (self.command, dict(inputs)), {}
        for name in self.required:
            if name not in inputs:
                raise self._missing(inputs)
        args: list[Any] = []
        for name in self.positional:  # positional-only: stop at the first one left out
            if name == self.context_name:
                args.append(context)
            elif name in inputs:
                args.append(inputs[name])
            else:
                break
        if self.takes_var_keyword:
            kwargs = dict(inputs)
        else:
            kwargs = {name: inputs[name] for name in self.keywords if name in inputs}
        if self.context_name is not None and self.context_name not in self.positional:
            kwargs[self.context_name] = context
        return tuple(args), kwargs

    def _missing(self, inputs: Mapping[str, Any]) -> PluginError:
        keys = ", ".join(sorted(inputs)) or "none"
        names = ", ".join(repr(name) for name in sorted(self.required) if name not in inputs)
        return PluginError(
            PluginErrorCode.InvalidParameters,
            f"{self.where} needs {names}, which the step's input does not have "
            f"(available keys: {keys})",
        )


def _is_context_parameter(parameter: inspect.Parameter) -> bool:
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        return parameter.name == "context"
    if isinstance(annotation, str):  # postponed annotations
        return "StepContext" in annotation
    return annotation is StepContext or StepContext in typing.get_args(annotation)


def _is_coroutine_function(fn: Callable[..., Any]) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004  # callable objects
    return not inspect.isroutine(fn) and inspect.iscoroutinefunction(call)


def make_binder(fn: Callable[..., Any], where: str) -> Binder:
    """Inspect `fn` once; `where` names it in error messages."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins: pass everything by keyword
        return Binder(where, False, (), (), frozenset(), None, True)
    positional: list[str] = []
    keywords: list[str] = []
    required: set[str] = set()
    context_name: str | None = None
    var_keyword = False
    for parameter in signature.parameters.values():
        kind = parameter.kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            var_keyword = True
            continue
        if kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        if context_name is None and _is_context_parameter(parameter):
            context_name = parameter.name
        elif parameter.default is inspect.Parameter.empty:
            required.add(parameter.name)
        if kind is inspect.Parameter.POSITIONAL_ONLY:
            positional.append(parameter.name)
        else:
            keywords.append(parameter.name)
    return Binder(
        where,
        _is_coroutine_function(fn),
        tuple(positional),
        tuple(keywords),
        frozenset(required),
        context_name,
        var_keyword,
    )


class BinderCache:
    """Binders by the function they describe, shared by every execution of an engine."""

    def __init__(self) -> None:
        self._binders: dict[tuple[object, str, str | None], Binder] = {}

    def get(self, fn: Callable[..., Any], where: str, command: str | None = None) -> Binder:
        key = (getattr(fn, "__func__", fn), where, command)
        binder = self._binders.get(key)
        if binder is None:
            binder = attrs.evolve(make_binder(fn, where), command=command)
            self._binders[key] = binder
        return binder


def resolve(
    plugins: PluginManager,
    cache: BinderCache,
    plugin_id: str,
    method_name: str,
) -> tuple[object, Callable[..., Any], Binder]:
    """Find ``plugin.method_name``, or QtForge's ``execute_command`` fallback.

    Raises:
        PluginError: ``PluginNotFound`` or ``CommandNotFound``.
    """
    found = plugins.get_plugin(plugin_id)
    if not found:
        registered = ", ".join(repr(name) for name in plugins.list_plugins()) or "none"
        raise PluginError(
            PluginErrorCode.PluginNotFound,
            f"no plugin {plugin_id!r} is registered (registered: {registered})",
        )
    plugin = found.value()
    where = f"{plugin_id}.{method_name}()"
    method = getattr(plugin, method_name, None)
    if method is not None and callable(method):
        return plugin, method, cache.get(method, where)
    command = getattr(plugin, "execute_command", None)
    if method is None and command is not None and callable(command):
        where = f"{plugin_id}.execute_command({method_name!r})"
        return plugin, command, cache.get(command, where, method_name)
    what = "is not callable" if method is not None else "does not exist"
    raise PluginError(
        PluginErrorCode.CommandNotFound,
        f"plugin {plugin_id!r} has no method {method_name!r} (the attribute {what})",
    )
