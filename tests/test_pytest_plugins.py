"""anyio's pytest plugin and pytest-asyncio (strict mode) work side by side in one module.

Engine tests run on both backends through ``@pytest.mark.anyio``; the asyncio embedding
tests use ``@pytest.mark.asyncio``. Each plugin must run only the tests marked for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest
import pytest_asyncio
import sniffio


@pytest.fixture
async def anyio_resource(anyio_backend: str) -> AsyncIterator[str]:
    """An async fixture run by anyio's plugin, on the test's own backend."""
    await anyio.lowlevel.checkpoint()
    yield sniffio.current_async_library()
    await anyio.lowlevel.checkpoint()


@pytest_asyncio.fixture
async def asyncio_loop() -> AsyncIterator[asyncio.AbstractEventLoop]:
    """An async fixture run by pytest-asyncio, on the test's event loop."""
    yield asyncio.get_running_loop()


@pytest.mark.anyio
async def test_anyio_test_runs_on_its_backend(anyio_backend: str) -> None:
    """A ``@pytest.mark.anyio`` test runs once per backend, on that backend."""
    assert sniffio.current_async_library() == anyio_backend
    with anyio.fail_after(5):
        await anyio.lowlevel.checkpoint()


@pytest.mark.anyio
async def test_anyio_async_fixture_shares_the_backend(
    anyio_resource: str, anyio_backend: str
) -> None:
    """anyio's plugin runs an async fixture on the same backend as the test using it."""
    assert anyio_resource == anyio_backend == sniffio.current_async_library()


@pytest.mark.asyncio
async def test_asyncio_test_runs_on_asyncio_only(
    asyncio_loop: asyncio.AbstractEventLoop, request: pytest.FixtureRequest
) -> None:
    """A ``@pytest.mark.asyncio`` test runs once, on asyncio, without anyio's backend
    parametrization, and its async fixture shares the loop."""
    assert sniffio.current_async_library() == "asyncio"
    assert asyncio.get_running_loop() is asyncio_loop
    assert "anyio_backend" not in request.fixturenames
    await asyncio.sleep(0)


def test_pytest_asyncio_is_in_strict_mode(request: pytest.FixtureRequest) -> None:
    """pytest-asyncio runs in strict mode, so it leaves unmarked async tests and plain
    async fixtures to anyio."""
    assert request.config.getini("asyncio_mode") == "strict"


def test_anyio_tests_are_collected_once_per_backend(request: pytest.FixtureRequest) -> None:
    """Each anyio-marked test in this module is collected for asyncio and for trio, and the
    asyncio-marked test once."""
    module = request.node.getparent(pytest.Module)
    assert module is not None
    names = {item.name for item in module.collect()}
    assert {
        "test_anyio_test_runs_on_its_backend[asyncio]",
        "test_anyio_test_runs_on_its_backend[trio]",
        "test_asyncio_test_runs_on_asyncio_only",
    } <= names
    assert not any(name.startswith("test_asyncio_test_runs_on_asyncio_only[") for name in names)
