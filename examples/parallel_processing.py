"""Parallel Workflow Execution: the API document's second usage example.

Scans ``images/``, ``videos/`` and ``audio/`` at the same time (three independent
steps in Parallel mode), then the ``aggregator`` step combines their results and writes
``media_report.json``. The image and video processors are plain methods that qtforge
runs in worker threads; the audio processor is ``async def``.

The code between the ``---`` lines is the document's, verbatim (the script first
changes to its own directory, since the document's paths are relative)::

    python examples/parallel_processing.py
"""

# The block below is copied verbatim from the API document, blank-line whitespace and
# all, after the chdir that makes its relative paths work:
# ruff: noqa: E402, E501, I001, W293

import json
import os
from pathlib import Path

os.chdir(Path(__file__).resolve().parent)

# --- verbatim from the API document, "Parallel Workflow Execution" ---
import qtforge

def create_parallel_workflow():
    orchestrator = qtforge.orchestration.PluginOrchestrator()
    
    # Create parallel workflow
    workflow = qtforge.orchestration.Workflow("parallel_processing", "Parallel Processing")
    workflow.set_execution_mode(qtforge.orchestration.ExecutionMode.Parallel)
    
    # Independent parallel steps
    process_images = qtforge.orchestration.WorkflowStep("images", "image_processor", "process_batch")
    process_images.parameters = {"input_dir": "images/", "format": "jpg"}
    
    process_videos = qtforge.orchestration.WorkflowStep("videos", "video_processor", "process_batch")
    process_videos.parameters = {"input_dir": "videos/", "format": "mp4"}
    
    process_audio = qtforge.orchestration.WorkflowStep("audio", "audio_processor", "process_batch")
    process_audio.parameters = {"input_dir": "audio/", "format": "wav"}
    
    # Final aggregation step (depends on all parallel steps)
    aggregate = qtforge.orchestration.WorkflowStep("aggregate", "aggregator", "combine_results")
    aggregate.dependencies = ["images", "videos", "audio"]
    
    # Add steps
    workflow.add_step(process_images)
    workflow.add_step(process_videos)
    workflow.add_step(process_audio)
    workflow.add_step(aggregate)
    
    # Register and execute
    orchestrator.register_workflow(workflow)
    return orchestrator.execute_workflow("parallel_processing")

# Execute parallel workflow
result = create_parallel_workflow()
if result:
    print(f"Parallel workflow started: {result.value()}")
# --- end of the verbatim block ---

# What the aggregator step wrote (the example's orchestrator is local to its function).
report = json.loads(Path("media_report.json").read_text(encoding="utf-8"))
for kind, files in report["files"].items():
    print(f"{kind}: {', '.join(file['name'] for file in files)}")
summary = report["summary"]
print(f"Combined {summary['total_files']} files, {summary['total_bytes']} bytes")
