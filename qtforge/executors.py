"""Executors: where steps run.

Every orchestrator knows four executors by name, and makes each on first use:

- ``"async"``: on the engine's event loop (`AsyncExecutor`);
- ``"thread"``: in the engine's worker threads, within its ``thread_limit``
  (`ThreadExecutor`);
- ``"process"``: in worker processes, for CPU-bound Python code (`ProcessExecutor`);
- ``"dask"``: on a local Dask cluster started on first use (`DaskExecutor`; needs
  ``pip install 'qtforge[dask]'``).

A step picks one with ``step.executor = "process"``; an orchestrator sets one for the
steps that pick none with ``default_executor=``, and replaces or adds executors with
``executors={"dask": DaskExecutor("tcp://scheduler:8786"), "gpu": ...}``. Without
either, ``async def`` methods run on the loop and plain ones in threads.

Timeouts, retries, cancellation, statuses, events and results behave the same whatever
the executor. What differs is what a cancelled call does (`Executor.interrupts_running`):
a process is killed, a thread or a running Dask task is abandoned and its result
discarded. In a worker process or on a Dask worker, the plugin and the step's values are
pickled copies, and a `StepContext` there carries the ids, attempt and inputs, but its
progress reports stay in the worker and its ``cancelled`` never turns true.

Nothing here imports Dask until a Dask executor is used.
"""

from .orchestration._executor_dask import DaskExecutor as DaskExecutor
from .orchestration._executor_process import ProcessExecutor as ProcessExecutor
from .orchestration._executors import AsyncExecutor as AsyncExecutor
from .orchestration._executors import Executor as Executor
from .orchestration._executors import StepCall as StepCall
from .orchestration._executors import ThreadExecutor as ThreadExecutor
from .orchestration._shipping import RemoteTraceback as RemoteTraceback

__all__ = [
    "AsyncExecutor",
    "DaskExecutor",
    "Executor",
    "ProcessExecutor",
    "RemoteTraceback",
    "StepCall",
    "ThreadExecutor",
]
