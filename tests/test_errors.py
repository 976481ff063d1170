"""`Expected`, `PluginError` and `PluginErrorCode`: qtforge's results and errors."""

from __future__ import annotations

import pickle

import pytest

import qtforge
from qtforge import Expected, PluginError, PluginErrorCode


def _failure(code: PluginErrorCode = PluginErrorCode.NotFound) -> Expected[int, PluginError]:
    return Expected.fail(code, "no workflow with id 'w'", "registered: none")


# -- PluginErrorCode ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("PluginNotFound", 107),
        ("DependencyMissing", 202),
        ("ExecutionFailed", 300),
        ("CommandNotFound", 301),
        ("InvalidParameters", 302),
        ("NotFound", 305),
        ("AlreadyExists", 307),
        ("InvalidState", 309),
        ("InvalidConfiguration", 310),
        ("CircularDependency", 312),
        ("OperationCancelled", 313),
        ("Timeout", 506),
    ],
)
def test_error_codes_keep_qtforge_names_and_numbers(name: str, number: int) -> None:
    """Each error code the SPEC lists has QtForge's name and number."""
    code = PluginErrorCode[name]
    assert code == number
    assert PluginErrorCode(number) is code


# -- PluginError -------------------------------------------------------------------


def test_plugin_error_is_an_exception_with_code_message_and_details() -> None:
    """`PluginError` subclasses `Exception` and carries `.code`, `.message` and `.details`."""
    error = PluginError(PluginErrorCode.Timeout, "step 'fetch' timed out", "after 30000 ms")
    assert isinstance(error, Exception)
    assert (error.code, error.message, error.details) == (
        PluginErrorCode.Timeout,
        "step 'fetch' timed out",
        "after 30000 ms",
    )


def test_plugin_error_message_and_details_default_to_empty() -> None:
    """A `PluginError` made from a code alone has an empty message and details."""
    error = PluginError(PluginErrorCode.OperationCancelled)
    assert (error.message, error.details) == ("", "")
    assert str(error) == "OperationCancelled"


def test_plugin_error_str_names_the_code_message_and_details() -> None:
    """``str(error)`` reads ``Code: message (details)``."""
    error = PluginError(PluginErrorCode.NotFound, "no workflow 'w'", "registered: none")
    assert str(error) == "NotFound: no workflow 'w' (registered: none)"


def test_plugin_error_repr_names_the_code() -> None:
    """``repr(error)`` shows the code by name, not only by number."""
    error = PluginError(PluginErrorCode.NotFound, "no workflow 'w'")
    assert "NotFound" in repr(error)
    assert "no workflow 'w'" in repr(error)


def test_plugin_error_is_caught_by_except_plugin_error() -> None:
    """``except qtforge.PluginError`` catches a raised `PluginError`."""
    with pytest.raises(qtforge.PluginError) as caught:
        raise PluginError(PluginErrorCode.ExecutionFailed, "boom")
    assert caught.value.code is PluginErrorCode.ExecutionFailed


def test_plugin_error_requires_a_plugin_error_code() -> None:
    """Building a `PluginError` from a plain int is a caller bug: `TypeError`."""
    with pytest.raises(TypeError, match="PluginErrorCode"):
        PluginError(305, "no workflow")  # type: ignore[arg-type]


def test_plugin_errors_compare_by_content() -> None:
    """Two `PluginError`s with the same code, message and details are equal (and hash alike)."""
    first = PluginError(PluginErrorCode.NotFound, "m", "d")
    assert first == PluginError(PluginErrorCode.NotFound, "m", "d")
    assert hash(first) == hash(PluginError(PluginErrorCode.NotFound, "m", "d"))
    assert first != PluginError(PluginErrorCode.NotFound, "m", "other")
    assert first != PluginError(PluginErrorCode.AlreadyExists, "m", "d")


def test_plugin_error_survives_pickling() -> None:
    """A `PluginError` pickles and unpickles with its code, message and details intact."""
    error = PluginError(PluginErrorCode.Timeout, "step 'a' timed out", "30000 ms")
    copy = pickle.loads(pickle.dumps(error))
    assert copy == error
    assert copy.code is PluginErrorCode.Timeout


# -- Expected ----------------------------------------------------------------------


def test_ok_is_truthy_and_holds_its_value() -> None:
    """`Expected.ok` is truthy, has a value and no error, and `value()` returns the value."""
    result = Expected.ok(42)
    assert result
    assert result.has_value()
    assert not result.has_error()
    assert result.value() == 42


def test_ok_none_is_still_a_value() -> None:
    """``Expected.ok(None)`` (what `register_workflow` returns) is truthy."""
    result = Expected.ok(None)
    assert result
    assert result.value() is None


@pytest.mark.parametrize("value", [0, "", [], False])
def test_ok_with_a_falsy_value_is_truthy(value: object) -> None:
    """Truthiness says "holds a value", whatever the value's own truthiness."""
    assert Expected.ok(value)


def test_fail_is_falsy_and_holds_its_error() -> None:
    """`Expected.fail` is falsy, has an error and no value, and `error()` returns it."""
    result = _failure()
    assert not result
    assert result.has_error()
    assert not result.has_value()
    assert result.error() == PluginError(
        PluginErrorCode.NotFound, "no workflow with id 'w'", "registered: none"
    )


def test_fail_accepts_a_ready_made_error() -> None:
    """``Expected.fail(error)`` holds that very `PluginError`."""
    error = PluginError(PluginErrorCode.InvalidState, "already finished")
    assert Expected.fail(error).error() is error


def test_value_of_a_failure_raises_the_held_error() -> None:
    """`value()` on a failure raises the `PluginError` it holds."""
    result = _failure(PluginErrorCode.Timeout)
    with pytest.raises(PluginError) as caught:
        result.value()
    assert caught.value is result.error()


def test_error_of_a_success_raises_value_error() -> None:
    """`error()` on a success raises `ValueError`."""
    with pytest.raises(ValueError, match="holds a value"):
        Expected.ok(1).error()


def test_value_or_returns_the_value_or_the_default() -> None:
    """`value_or` returns the value of a success and the default of a failure."""
    assert Expected.ok(1).value_or(2) == 1
    assert _failure().value_or(2) == 2


def test_expected_holds_exactly_one_of_value_or_error() -> None:
    """An `Expected` with neither or both a value and an error cannot be built."""
    with pytest.raises(TypeError):
        Expected()
    with pytest.raises(TypeError):
        Expected(1, PluginError(PluginErrorCode.NotFound))


def test_expected_compares_by_content() -> None:
    """Expecteds are equal when they hold equal values, or equal errors."""
    assert Expected.ok([1, 2]) == Expected.ok([1, 2])
    assert Expected.ok(1) != Expected.ok(2)
    assert _failure() == _failure()
    assert _failure(PluginErrorCode.NotFound) != _failure(PluginErrorCode.Timeout)
    assert Expected.ok(None) != Expected.fail(PluginErrorCode.NotFound)


def test_expected_is_not_hashable() -> None:
    """Being equal by (possibly mutable) content, an `Expected` is unhashable."""
    with pytest.raises(TypeError):
        hash(Expected.ok(1))


def test_expected_repr_shows_the_value_or_the_error() -> None:
    """``repr`` shows the held value, or the held error with its code's name."""
    assert repr(Expected.ok("exec-1")) == "Expected('exec-1')"
    failure = repr(_failure(PluginErrorCode.NotFound))
    assert failure.startswith("Expected(error=")
    assert "NotFound" in failure
    assert "no workflow with id 'w'" in failure
