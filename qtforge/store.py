"""Stores: where executions are recorded so that they outlive the process.

``PluginOrchestrator(store="runs.db")`` (or ``AsyncPluginOrchestrator(store=...)``)
records every execution in a `SQLiteStore` file: the workflow snapshot, initial data,
status, each step's state and result (committed with the step's completion), each
attempt, and an append-only event log. Another process can then list and read those
executions, and `resume_workflow` continues one whose process died: completed steps are
not run again, steps that were running run again (at least once; use
`StepContext.idempotency_key`). Without ``store=`` nothing is recorded beyond memory.

Step results must be storable: JSON by default (`JSONSerializer`), or any `Serializer`
passed to the store; a result that cannot be serialised fails its step.
"""

from .orchestration._store import ExecutionStore as ExecutionStore
from .orchestration._store import JSONSerializer as JSONSerializer
from .orchestration._store import Serializer as Serializer
from .orchestration._store import StoreError as StoreError
from .orchestration._store_sqlite import MemoryStore as MemoryStore
from .orchestration._store_sqlite import SQLiteStore as SQLiteStore

__all__ = [
    "ExecutionStore",
    "JSONSerializer",
    "MemoryStore",
    "SQLiteStore",
    "Serializer",
    "StoreError",
]
