"""Error Handling and Retry Logic: the API document's third usage example.

The ``fetch_data`` step GETs ``https://api.example.com/data`` with ``max_retries = 3``.
There is no internet here, so the script serves that URL from a local server that
answers ``503 Service Unavailable`` twice before it works, and points the
``http_client`` plugin at it (``QTFORGE_EXAMPLES_API_BASE``). qtforge's own log lines
(logger ``qtforge``, level INFO) show each retry; the step waits about 1 s, then 2 s
(``retry_delay`` with exponential backoff), and succeeds on its third attempt.

The code between the ``---`` lines is the document's, verbatim::

    python examples/robust_processing.py
"""

# The block below is copied verbatim from the API document, blank-line whitespace and
# all, after the chdir that makes relative paths (the cache file) work:
# ruff: noqa: E402, I001, RET505, W293

import logging
import os
import sys
from pathlib import Path

from qtforge_examples.local_api import LocalApi
from qtforge_examples.web import API_BASE_ENV

os.chdir(Path(__file__).resolve().parent)

# --- verbatim from the API document, "Error Handling and Retry Logic" ---
import qtforge

def create_robust_workflow():
    orchestrator = qtforge.orchestration.PluginOrchestrator()
    
    workflow = qtforge.orchestration.Workflow("robust_processing", "Robust Processing")
    
    # Step with retry logic
    unreliable_step = qtforge.orchestration.WorkflowStep("fetch_data", "http_client", "fetch")
    unreliable_step.parameters = {"url": "https://api.example.com/data"}
    unreliable_step.max_retries = 3
    unreliable_step.timeout = 30000  # 30 seconds
    unreliable_step.critical = True
    
    # Fallback step (non-critical)
    fallback_step = qtforge.orchestration.WorkflowStep("fallback", "cache_reader", "read_cached")
    fallback_step.dependencies = ["fetch_data"]
    fallback_step.critical = False  # Won't fail entire workflow
    
    workflow.add_step(unreliable_step)
    workflow.add_step(fallback_step)
    
    orchestrator.register_workflow(workflow)
    
    # Execute with error handling
    try:
        result = orchestrator.execute_workflow("robust_processing")
        if result:
            execution_id = result.value()
            print(f"Robust workflow started: {execution_id}")
            return execution_id
        else:
            print(f"Failed to start workflow: {result.error().message}")
    except qtforge.PluginError as e:
        print(f"Plugin error: {e}")
    except Exception as e:
        print(f"Unexpected error: {e}")
    
    return None
# --- end of the verbatim block ---


def main() -> int:
    """Run the example against a flaky local API; 0 if it got its data in the end."""
    logging.basicConfig(stream=sys.stdout, format="%(name)s: %(message)s")
    logging.getLogger("qtforge").setLevel(logging.INFO)  # show qtforge's retry events
    with LocalApi(failures=2) as api:
        os.environ[API_BASE_ENV] = api.base_url
        execution_id = create_robust_workflow()
    print(f"Local API answered GET /data with: {', '.join(map(str, api.statuses))}")
    return 0 if execution_id is not None and api.statuses[-1:] == [200] else 1


if __name__ == "__main__":
    sys.exit(main())
