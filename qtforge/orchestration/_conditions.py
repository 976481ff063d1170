"""Step conditions: expression strings checked by a safe evaluator, or callables.

Expressions are parsed with `ast` once, at registration, where syntax errors and
private names (``__import__``, ``x.__class__``) are refused, and evaluated by simpleeval
over the step's input mapping, with a few builtins (`len`, `min`, `max`, `abs`, `round`,
`sum`, `any`, `all`, `int`, `float`, `str`, `bool`); nothing reaches `eval`.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Mapping
from typing import Any

import attrs
import simpleeval

from .._errors import PluginError, PluginErrorCode
from ._workflow import Condition

__all__ = ["CompiledCondition", "compile_condition"]

# What an expression may call besides its inputs' own methods.
_FUNCTIONS = {
    function.__name__: function
    for function in (abs, all, any, bool, float, int, len, max, min, round, str, sum)
}
# Syntax that has no business in a condition (names starting with "_" are refused too).
_FORBIDDEN = (ast.Lambda, ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom)


@attrs.frozen
class CompiledCondition:
    """A condition ready to evaluate; `source` is what the user wrote."""

    source: Condition
    _tree: ast.expr | None = attrs.field(alias="tree", default=None, eq=False)

    async def evaluate(self, inputs: Mapping[str, Any], where: str) -> bool:
        """Whether the step should run, given its input mapping.

        Raises:
            PluginError: ``InvalidConfiguration`` for an expression that names an unknown
                key or cannot be evaluated, ``ExecutionFailed`` for a callable that raises.
        """
        if self._tree is None:
            assert callable(self.source)
            try:
                outcome = self.source(inputs)
                if inspect.isawaitable(outcome):
                    outcome = await outcome
            except Exception as exc:
                raise PluginError(
                    PluginErrorCode.ExecutionFailed,
                    f"condition of {where} raised {type(exc).__name__}: {exc}",
                ) from exc
            return bool(outcome)
        evaluator = simpleeval.EvalWithCompoundTypes(names=inputs, functions=_FUNCTIONS)
        try:
            return bool(evaluator.eval(self.source, previously_parsed=self._tree))
        except simpleeval.NameNotDefined as exc:
            message = f"condition {self.source!r} of {where} names {exc.name!r}"
            keys = ", ".join(sorted(inputs)) or "none"
            raise PluginError(
                PluginErrorCode.InvalidConfiguration,
                f"{message}, which is not in its input (available keys: {keys})",
            ) from exc
        except Exception as exc:
            raise PluginError(
                PluginErrorCode.InvalidConfiguration,
                f"condition {self.source!r} of {where} cannot be evaluated: "
                f"{type(exc).__name__}: {exc}",
            ) from exc


def compile_condition(condition: Condition, where: str) -> CompiledCondition:
    """Check `condition` and prepare it for evaluation.

    Raises:
        PluginError: ``InvalidConfiguration`` if an expression is not valid Python syntax.
    """
    if not isinstance(condition, str):
        return CompiledCondition(condition)
    try:
        tree = ast.parse(condition.strip(), mode="eval").body
    except SyntaxError as exc:
        raise PluginError(
            PluginErrorCode.InvalidConfiguration,
            f"condition {condition!r} of {where} is not a valid expression: {exc.msg}",
        ) from exc
    for node in ast.walk(tree):
        name = getattr(node, "id", None) or getattr(node, "attr", None) or ""
        if isinstance(node, _FORBIDDEN) or name.startswith("_"):
            what = f"{name!r}" if name.startswith("_") else type(node).__name__.lower()
            raise PluginError(
                PluginErrorCode.InvalidConfiguration,
                f"condition {condition!r} of {where} uses {what}, which conditions may not",
            )
    return CompiledCondition(condition, tree=tree)
