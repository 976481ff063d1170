"""Workflow Status Monitoring: the API document's fourth usage example.

The document defines two monitors; the script below the ``---`` block drives them. It
registers two workflows, ``api_sync`` (fetch from a deliberately slow local API, then
read through the cache) and ``csv_check`` (load and validate ``input.csv``), starts
executions with ``async_execution=True``, follows one with
``asyncio.run(monitor_workflow_async(...))`` and several at once with
``monitor_multiple_workflows(...)``.

The code between the ``---`` lines is the document's, verbatim; ``import time`` above
it is added because ``monitor_multiple_workflows`` uses ``time.sleep``::

    python examples/monitoring.py
"""

# The block below is copied verbatim from the API document, blank-line whitespace and
# all, after the chdir that makes relative paths (input.csv) work:
# ruff: noqa: E402, E501, I001, W293

import os
import sys
import time
from pathlib import Path

from qtforge_examples.local_api import LocalApi
from qtforge_examples.web import API_BASE_ENV

os.chdir(Path(__file__).resolve().parent)

# --- verbatim from the API document, "Workflow Status Monitoring" ---
import qtforge
import asyncio

async def monitor_workflow_async(orchestrator, execution_id):
    """Asynchronously monitor workflow execution."""
    while True:
        status_result = orchestrator.get_workflow_status(execution_id)
        if status_result:
            status = status_result.value()
            
            print(f"Workflow {execution_id}:")
            print(f"  Status: {status.get('status', 'unknown')}")
            print(f"  Progress: {status.get('progress', 0):.1%}")
            print(f"  Current Step: {status.get('current_step', 'none')}")
            print(f"  Completed Steps: {status.get('completed_steps', 0)}/{status.get('total_steps', 0)}")
            
            if status.get('status') in ['completed', 'failed', 'cancelled']:
                break
        
        await asyncio.sleep(1)

def monitor_multiple_workflows(orchestrator, execution_ids):
    """Monitor multiple workflow executions."""
    import concurrent.futures
    
    def monitor_single(execution_id):
        while True:
            status_result = orchestrator.get_workflow_status(execution_id)
            if status_result:
                status = status_result.value()
                if status.get('status') in ['completed', 'failed', 'cancelled']:
                    return execution_id, status.get('status')
            time.sleep(0.5)
    
    with concurrent.futures.ThreadPoolExecutor() as executor:
        futures = {executor.submit(monitor_single, eid): eid for eid in execution_ids}
        
        for future in concurrent.futures.as_completed(futures):
            execution_id, final_status = future.result()
            print(f"Workflow {execution_id} finished with status: {final_status}")
# --- end of the verbatim block ---


def step(
    step_id: str, plugin_id: str, method: str, after: str | None = None, **parameters: object
) -> qtforge.orchestration.WorkflowStep:
    """A step calling ``plugin_id.method(**parameters)``, run after step `after`."""
    built = qtforge.orchestration.WorkflowStep(step_id, plugin_id, method)
    built.parameters = parameters
    built.dependencies = [after] if after else []
    return built


def register_workflows(orchestrator: qtforge.orchestration.PluginOrchestrator) -> None:
    """Register ``api_sync`` and ``csv_check``."""
    api_sync = qtforge.orchestration.Workflow("api_sync", "Sync from the API")
    url = "https://api.example.com/data"
    api_sync.add_step(step("fetch_data", "http_client", "fetch", url=url))
    api_sync.add_step(step("cache", "cache_reader", "read_cached", after="fetch_data"))
    csv_check = qtforge.orchestration.Workflow("csv_check", "Check the CSV input")
    csv_check.add_step(step("load", "csv_loader", "load_file", file_path="input.csv"))
    csv_check.add_step(step("validate", "data_validator", "validate", after="load"))
    for workflow in (api_sync, csv_check):
        orchestrator.register_workflow(workflow).value()  # raises if registration failed


def start(orchestrator: qtforge.orchestration.PluginOrchestrator, workflow_id: str) -> str:
    """Start `workflow_id` without waiting for it; its execution id."""
    return orchestrator.execute_workflow(workflow_id, async_execution=True).value()


def main() -> int:
    """Start executions and watch them with the document's two monitors."""
    with LocalApi(delay=1.5) as api, qtforge.orchestration.PluginOrchestrator() as orchestrator:
        os.environ[API_BASE_ENV] = api.base_url
        register_workflows(orchestrator)
        print("== One workflow, monitored from an asyncio event loop ==")
        asyncio.run(monitor_workflow_async(orchestrator, start(orchestrator, "api_sync")))
        print("== Several workflows, monitored from worker threads ==")
        names = ("api_sync", "csv_check", "api_sync")
        monitor_multiple_workflows(orchestrator, [start(orchestrator, name) for name in names])
    return 0


if __name__ == "__main__":
    sys.exit(main())
