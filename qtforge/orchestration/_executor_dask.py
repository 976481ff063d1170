"""`DaskExecutor`: steps on a Dask cluster (the optional ``qtforge[dask]`` extra).

Dask's asynchronous client runs on asyncio only, so this executor drives the ordinary
(synchronous) `distributed.Client`, which keeps its own event loop on a thread of its
own, and bridges to the engine's loop, asyncio or trio alike: client calls that may
block run in worker threads, and a future's completion reaches the engine through a
done-callback that wakes an `anyio.Event` thread-safely. No thread is held while a
task runs, so thousands can be in flight.

Every call is shipped as a cloudpickle envelope run by `run_shipped` (see
``_shipping.py``): a plugin module the workers cannot import becomes a step error
instead of a task that never resolves. The engine bounds every wait by the step's
timeout; a future that fails (a lost worker, ``KilledWorker``) fails the step, which
is retried as the step allows.

Dask cannot interrupt a task that is already running (dask/distributed#4694): a
cancelled or timed-out call has its future cancelled, the step is reported
``cancelled`` (or timed out) and its result is discarded, but the task may run to its
end on the worker. Steps that may be retried or cancelled should be idempotent
(`StepCall.idempotency_key`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import uuid
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.to_thread

from .._errors import PluginError, PluginErrorCode
from ._executors import Executor, StepCall
from ._logging import get_logger
from ._shipping import pack, run_shipped, unpack
from ._threads import event_waker

__all__ = ["DaskExecutor"]

_CANCEL_GRACE = 5.0  # seconds to tell the scheduler about a cancelled future
_CLUSTER_DEFAULTS: Mapping[str, Any] = {"dashboard_address": ":0"}  # any free port


class DaskExecutor(Executor):
    """Runs calls as tasks on a Dask cluster; needs ``pip install 'qtforge[dask]'``.

    With no argument it starts a `distributed.LocalCluster` (worker processes, one per
    CPU, its web server on any free port; change that with `cluster_options`) on the
    first call, and stops it on `aclose`. Give it a scheduler `address` to use a
    running cluster, or a `client` (a synchronous `distributed.Client`) that you keep
    and close yourself. The first call waits for the cluster or connection; `start`
    does it in advance.

    qtforge must be installed on the workers, and so must every module the steps'
    plugins and values come from (modules run as a script are sent by value). Plugins
    and arguments are sent with cloudpickle for every call, results come back the same
    way. An ``async def`` method runs on an asyncio event loop of its own in the
    worker, and a `StepContext` there is a copy (see ``qtforge.executors``).

    Cancellation does not reach a running task (`interrupts_running` is ``False``): see
    the module documentation.

    Args:
        address: A scheduler address (``"tcp://host:8786"``) to connect to.
        client: A `distributed.Client` to use as it is (not closed by `aclose`).
        cluster_options: Keyword arguments for the `distributed.LocalCluster` started
            when neither `address` nor `client` is given (say ``{"n_workers": 2}``).
    """

    interrupts_running = False

    def __init__(
        self,
        address: str | None = None,
        *,
        client: Any = None,
        cluster_options: Mapping[str, Any] | None = None,
    ) -> None:
        if address is not None and client is not None:
            raise ValueError("give DaskExecutor an address or a client, not both")
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address must be a str, not {type(address).__name__}")
        if cluster_options is not None and (address is not None or client is not None):
            raise ValueError("cluster_options apply only to the LocalCluster DaskExecutor starts")
        self.address = address
        self.cluster_options = dict(cluster_options or {})
        self._given_client = client
        self._client: Any = client
        self._cluster: Any = None
        self._starting: anyio.Lock | None = None
        self._log = get_logger("qtforge.dask")

    @property
    def client(self) -> Any:
        """The `distributed.Client` in use, or ``None`` before the first call."""
        return self._client

    async def start(self) -> None:
        """Connect, or start the local cluster, now rather than on the first call.

        Checkpoint; the start itself runs in a worker thread and is shielded from
        cancellation (a half-started cluster would be left behind).

        Raises:
            PluginError: ``InvalidConfiguration`` if ``distributed`` is not installed;
                ``ResourceUnavailable`` if the cluster could not be reached or started.
        """
        if self._starting is None:
            self._starting = anyio.Lock()
        async with self._starting:
            if self._client is not None:
                return
            with anyio.CancelScope(shield=True):
                self._client, self._cluster = await anyio.to_thread.run_sync(self._connect)

    def _connect(self) -> tuple[Any, Any]:
        try:
            distributed: Any = importlib.import_module("distributed")
        except ImportError as exc:
            raise PluginError(
                PluginErrorCode.InvalidConfiguration,
                "the 'dask' executor needs the distributed package: pip install 'qtforge[dask]'",
            ) from exc
        cluster = None
        try:
            if self.address is not None:
                return distributed.Client(self.address, set_as_default=False), None
            cluster = distributed.LocalCluster(**{**_CLUSTER_DEFAULTS, **self.cluster_options})
            return distributed.Client(cluster, set_as_default=False), cluster
        except Exception as exc:
            if cluster is not None:
                cluster.close()
            where = self.address or "a LocalCluster"
            raise PluginError(
                PluginErrorCode.ResourceUnavailable,
                f"the 'dask' executor could not start its client for {where}: "
                f"{type(exc).__name__}: {exc}",
                repr(exc),
            ) from exc

    async def run(self, call: StepCall) -> Any:
        if self._client is None:
            await self.start()
        client = self._client
        import cloudpickle

        key = f"qtforge-{call.step_id}-{call.attempt}-{uuid.uuid4().hex}"
        done = anyio.Event()
        wake = event_waker(done)
        submitted: list[Any] = []  # the future, as soon as there is one

        def submit() -> None:  # in a worker thread: pickling and submitting take time
            payload = pack(call, cloudpickle.dumps, "dask")
            future = client.submit(run_shipped, payload, key=key, pure=False)
            submitted.append(future)
            future.add_done_callback(lambda _future: wake())

        try:
            await anyio.to_thread.run_sync(submit)
            await done.wait()
            future = submitted[0]
            reply = await anyio.to_thread.run_sync(
                functools.partial(_outcome, future, call.timeout), abandon_on_cancel=True
            )
        except anyio.get_cancelled_exc_class():
            if submitted:
                await self._cancel(submitted[0], call)
            call.cancelled()
            raise
        if isinstance(reply, BaseException):
            raise PluginError(
                PluginErrorCode.ExecutionFailed,
                f"{call.where}: its Dask task failed ({type(reply).__name__}: {reply}); "
                "the worker running it may have been lost",
                repr(reply),
            ) from reply
        return unpack(reply, call, "dask")

    async def _cancel(self, future: Any, call: StepCall) -> None:
        """Cancel `future` on the cluster; a running task goes on regardless."""
        with anyio.move_on_after(_CANCEL_GRACE, shield=True):
            with contextlib.suppress(Exception):
                await anyio.to_thread.run_sync(
                    functools.partial(self._client.cancel, [future], force=True),
                    abandon_on_cancel=True,
                )
        self._log.info(
            "dask.task_cancelled",
            step_id=call.step_id,
            execution_id=call.execution_id,
            key=future.key,
            interrupted=False,  # Dask lets a running task finish; its result is discarded
        )

    async def aclose(self) -> None:
        """Close the client and the local cluster this executor started (not a client it
        was given). Checkpoint; the closing runs in a worker thread."""
        client, cluster = self._client, self._cluster
        self._client, self._cluster = self._given_client, None
        if client is not None and client is not self._given_client:
            await anyio.to_thread.run_sync(client.close)
        if cluster is not None:
            await anyio.to_thread.run_sync(cluster.close)


def _outcome(future: Any, timeout: float | None) -> bytes | BaseException:
    """A finished future's reply, or the exception that failed it; in a worker thread."""
    try:
        reply: bytes = future.result(timeout=timeout)
        return reply
    except Exception as exc:  # KilledWorker, a cancelled future, a lost connection
        return exc
    finally:
        future.release()
