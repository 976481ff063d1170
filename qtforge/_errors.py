"""Results and errors.

qtforge reports expected failures as values, the way QtForge's C++ API does::

    Expected[T, PluginError]     a value of type T, or a PluginError; truthy iff a value

and keeps one small exception tree for the places where raising is the right thing::

    Exception
     └── PluginError             .code: PluginErrorCode, .message, .details

`Expected.value()` raises the `PluginError` it holds, so ``except qtforge.PluginError``
catches a failure that a caller chose not to check.
"""

from __future__ import annotations

import enum
from typing import Any, Generic, TypeVar, final, overload

__all__ = ["Expected", "PluginError", "PluginErrorCode"]

T = TypeVar("T")
E = TypeVar("E", bound="PluginError")
D = TypeVar("D")


class PluginErrorCode(enum.IntEnum):
    """QtForge's error codes, with QtForge's names and numbers."""

    Success = 0

    # Loading
    FileNotFound = 100
    InvalidFormat = 101
    LoadFailed = 102
    UnloadFailed = 103
    SymbolNotFound = 104
    AlreadyLoaded = 105
    NotLoaded = 106
    PluginNotFound = 107

    # Initialization
    InitializationFailed = 200
    ConfigurationError = 201
    DependencyMissing = 202
    VersionMismatch = 203

    # Runtime
    ExecutionFailed = 300
    CommandNotFound = 301
    InvalidParameters = 302
    StateError = 303
    InvalidArgument = 304
    NotFound = 305
    ResourceUnavailable = 306
    AlreadyExists = 307
    NotImplemented = 308
    InvalidState = 309
    InvalidConfiguration = 310
    DuplicatePlugin = 311
    CircularDependency = 312
    OperationCancelled = 313
    NotSupported = 314
    IncompatibleVersion = 315
    SystemError = 316

    # Security
    SecurityViolation = 400
    PermissionDenied = 401
    SignatureInvalid = 402
    UntrustedSource = 403

    # System
    OutOfMemory = 500
    ResourceExhausted = 501
    NetworkError = 502
    FileSystemError = 503
    ThreadingError = 504
    TimeoutError = 505
    Timeout = 506

    # Generic
    Unknown = 998
    UnknownError = 999
    OperationNotSupported = 1000


class PluginError(Exception):
    """A failure with a QtForge error code.

    Args:
        code: What kind of failure it is.
        message: What failed, naming the workflow, step, plugin or key involved.
        details: Anything else that helps (the original exception, available keys...).
    """

    code: PluginErrorCode
    message: str
    details: str

    def __init__(self, code: PluginErrorCode, message: str = "", details: str = "") -> None:
        if not isinstance(code, PluginErrorCode):
            raise TypeError(f"code must be a PluginErrorCode, not {type(code).__name__}")
        super().__init__(code, message, details)
        self.code = code
        self.message = message
        self.details = details

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}" if self.message else self.code.name
        return f"{text} ({self.details})" if self.details else text

    def __repr__(self) -> str:
        return f"PluginError(PluginErrorCode.{self.code.name}, {self.message!r}, {self.details!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PluginError):
            return NotImplemented
        return (self.code, self.message, self.details) == (
            other.code,
            other.message,
            other.details,
        )

    def __hash__(self) -> int:
        return hash((self.code, self.message, self.details))


_NO_VALUE: Any = object()


@final
class Expected(Generic[T, E]):
    """A value of type ``T`` or an error of type ``E`` (QtForge's ``expected``).

    Build one with `Expected.ok` or `Expected.fail`; test it with ``if result:``.
    """

    __slots__ = ("_error", "_value")

    _value: T
    _error: E | None

    def __init__(self, value: T = _NO_VALUE, error: E | None = None) -> None:
        if (value is _NO_VALUE) == (error is None):
            raise TypeError("Expected holds exactly one of a value or an error")
        self._value = value
        self._error = error

    @staticmethod
    def ok(value: D) -> Expected[D, PluginError]:
        """A successful result holding `value`."""
        return Expected(value)

    @staticmethod
    def fail(
        code: PluginErrorCode | PluginError, message: str = "", details: str = ""
    ) -> Expected[Any, PluginError]:
        """A failed result holding a `PluginError` (or the one given)."""
        error = code if isinstance(code, PluginError) else PluginError(code, message, details)
        return Expected(error=error)

    def __bool__(self) -> bool:
        return self._error is None

    def has_value(self) -> bool:
        return self._error is None

    def has_error(self) -> bool:
        return self._error is not None

    def value(self) -> T:
        """The value; raises the held `PluginError` if this is a failure."""
        if self._error is not None:
            raise self._error
        return self._value

    def error(self) -> E:
        """The error; raises `ValueError` if this holds a value."""
        if self._error is None:
            raise ValueError(f"Expected holds a value ({self._value!r}), not an error")
        return self._error

    @overload
    def value_or(self, default: T) -> T: ...
    @overload
    def value_or(self, default: D) -> T | D: ...
    def value_or(self, default: object) -> object:
        return default if self._error is not None else self._value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Expected):
            return NotImplemented
        return (self._value, self._error) == (other._value, other._error)

    __hash__ = None  # type: ignore[assignment]  # equal by content, so not hashable

    def __repr__(self) -> str:
        if self._error is not None:
            return f"Expected(error={self._error!r})"
        return f"Expected({self._value!r})"
