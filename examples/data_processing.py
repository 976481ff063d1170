"""Basic Workflow Creation and Execution: the API document's first usage example.

Loads ``input.csv``, drops the invalid rows, min-max normalises the numeric columns and
writes ``output.csv``, with the ``csv_loader``, ``data_validator``, ``data_transformer``
and ``csv_writer`` plugins that the qtforge-examples distribution advertises (nothing
registers them here: ``PluginOrchestrator()`` finds them through their entry points).

The code between the ``---`` lines is the document's, verbatim. Its file names are
relative to the current directory, so the script first changes to its own directory
and runs the same from anywhere::

    python examples/data_processing.py
"""

# The block below is copied verbatim from the API document, blank-line whitespace and
# all, after the chdir that makes its relative file names work:
# ruff: noqa: E402, E501, I001, RET505, RET508, W293

import os
from pathlib import Path

os.chdir(Path(__file__).resolve().parent)

# --- verbatim from the API document, "Basic Workflow Creation and Execution" ---
import qtforge

def create_data_processing_workflow():
    # Create orchestrator
    orchestrator = qtforge.orchestration.PluginOrchestrator()
    
    # Create workflow
    workflow = qtforge.orchestration.Workflow("data_processing", "Data Processing Pipeline")
    workflow.set_description("Process CSV data through multiple stages")
    workflow.set_execution_mode(qtforge.orchestration.ExecutionMode.Sequential)
    
    # Create workflow steps
    load_step = qtforge.orchestration.WorkflowStep("load", "csv_loader", "load_file")
    load_step.parameters = {"file_path": "input.csv"}
    
    validate_step = qtforge.orchestration.WorkflowStep("validate", "data_validator", "validate")
    validate_step.dependencies = ["load"]
    
    transform_step = qtforge.orchestration.WorkflowStep("transform", "data_transformer", "transform")
    transform_step.dependencies = ["validate"]
    transform_step.parameters = {"operation": "normalize"}
    
    save_step = qtforge.orchestration.WorkflowStep("save", "csv_writer", "save_file")
    save_step.dependencies = ["transform"]
    save_step.parameters = {"output_path": "output.csv"}
    
    # Add steps to workflow
    workflow.add_step(load_step)
    workflow.add_step(validate_step)
    workflow.add_step(transform_step)
    workflow.add_step(save_step)
    
    # Register workflow
    result = orchestrator.register_workflow(workflow)
    if result:
        print("Workflow registered successfully")
        return orchestrator
    else:
        print(f"Failed to register workflow: {result.error().message}")
        return None

def execute_workflow(orchestrator):
    # Execute workflow
    execution_result = orchestrator.execute_workflow("data_processing")
    if not execution_result:
        print(f"Failed to start workflow: {execution_result.error().message}")
        return
    
    execution_id = execution_result.value()
    print(f"Workflow execution started: {execution_id}")
    
    # Monitor execution
    import time
    while True:
        status_result = orchestrator.get_workflow_status(execution_id)
        if status_result:
            status = status_result.value()
            print(f"Progress: {status.get('progress', 0)}% - {status.get('current_step', 'Unknown')}")
            
            if status.get('status') == 'completed':
                print("Workflow completed successfully!")
                
                # Get results
                results_result = orchestrator.get_workflow_results(execution_id)
                if results_result:
                    results = results_result.value()
                    print(f"Results: {results}")
                break
            elif status.get('status') == 'failed':
                print("Workflow execution failed!")
                break
        
        time.sleep(1)

# Usage
orchestrator = create_data_processing_workflow()
if orchestrator:
    execute_workflow(orchestrator)
# --- end of the verbatim block ---
