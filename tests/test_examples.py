"""The examples: the API document's four usage examples run as scripts, and their plugins.

The scripts run in subprocesses on a copy of ``examples/`` in a temporary directory, so
the files they write never land in the repository. The plugins come from the
``qtforge-examples`` distribution (``pip install -e ./examples``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from qtforge_examples import (
    Aggregator,
    AudioProcessor,
    CacheReader,
    CsvLoader,
    CsvWriter,
    DataTransformer,
    DataValidator,
    HttpClient,
    ImageProcessor,
    VideoProcessor,
)
from qtforge_examples.local_api import PAYLOAD, LocalApi
from qtforge_examples.web import API_BASE_ENV, HttpStatusError, redirect_url

import qtforge
from qtforge.orchestration import PluginOrchestrator, Workflow, WorkflowStep

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPT_TIMEOUT = 60  # seconds; the slowest script needs about 5
API_URL = "https://api.example.com/data"

# examples/input.csv after the pipeline: rows 7 (no station) and 8 (humidity "n/a")
# dropped, each numeric column min-max scaled over the eight valid rows.
EXPECTED_OUTPUT = [
    ["station", "date", "temperature_c", "humidity_pct", "wind_kmh"],
    ["Oslo", "2024-03-01", "0.4765", "0.6111", "0.3708"],
    ["Bergen", "2024-03-01", "0.9195", "1.0", "0.8483"],
    ["Trondheim", "2024-03-01", "0.3221", "0.3333", "0.1067"],
    ["Stavanger", "2024-03-01", "1.0", "0.7778", "0.5843"],
    ["Tromso", "2024-03-01", "0.0", "0.0", "1.0"],
    ["Kristiansand", "2024-03-01", "0.8591", "0.5", "0.2079"],
    ["Drammen", "2024-03-01", "0.5638", "0.7222", "0.0"],
    ["Alesund", "2024-03-01", "0.8389", "0.8889", "0.7191"],
]


# -- the scripts ---------------------------------------------------------------------


@pytest.fixture
def examples_copy(tmp_path: Path) -> Path:
    """The example scripts and their data files, copied under `tmp_path`."""
    target = tmp_path / "examples"
    shutil.copytree(
        EXAMPLES,
        target,
        ignore=shutil.ignore_patterns(
            "qtforge_examples", "__pycache__", "*.toml", "*.md", "output.csv", "media_report.json"
        ),
    )
    return target


def run_example(script: Path) -> str:
    """Run `script` from its parent's parent (so its own chdir is exercised); its stdout.

    Fails the test unless the script exits 0 with nothing on stderr.
    """
    env = {name: value for name, value in os.environ.items() if name != API_BASE_ENV}
    completed = subprocess.run(
        [sys.executable, str(script)],
        cwd=script.parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        check=False,
    )
    output = f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    assert completed.returncode == 0, f"{script.name} exited {completed.returncode}\n{output}"
    assert completed.stderr == "", output
    return completed.stdout


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.reader(file))


@pytest.mark.slow
def test_data_processing_writes_the_valid_rows_normalised(examples_copy: Path) -> None:
    """The first example drops the invalid rows and writes min-max normalised ones."""
    stdout = run_example(examples_copy / "data_processing.py")

    assert "Workflow completed successfully!" in stdout
    assert read_csv(examples_copy / "output.csv") == EXPECTED_OUTPUT


@pytest.mark.slow
def test_parallel_processing_describes_every_shipped_media_file(examples_copy: Path) -> None:
    """The parallel example's report lists every shipped media file with its digest."""
    stdout = run_example(examples_copy / "parallel_processing.py")

    assert "Parallel workflow started:" in stdout
    report = json.loads((examples_copy / "media_report.json").read_text(encoding="utf-8"))
    for kind, pattern in (("images", "*.jpg"), ("videos", "*.mp4"), ("audio", "*.wav")):
        shipped = {
            path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in (examples_copy / kind).glob(pattern)
        }
        described = {file["name"]: file["sha256"] for file in report["files"][kind]}
        assert shipped, f"no {pattern} files shipped in examples/{kind}"
        assert described == shipped
    assert report["summary"]["total_files"] == 7


@pytest.mark.slow
def test_robust_processing_retries_until_the_api_answers(examples_copy: Path) -> None:
    """The retry example's fetch fails twice with 503, is retried, and completes."""
    stdout = run_example(examples_copy / "robust_processing.py")

    assert "Robust workflow started:" in stdout
    assert "Local API answered GET /data with: 503, 503, 200" in stdout
    assert stdout.count("event=step.retrying") == 2
    assert "event=workflow.completed" in stdout


@pytest.mark.slow
def test_monitoring_sees_every_execution_complete(examples_copy: Path) -> None:
    """Both monitors of the monitoring example follow their executions to 'completed'."""
    stdout = run_example(examples_copy / "monitoring.py")

    single, _, multiple = stdout.partition("== Several workflows")
    assert "Status: running" in single
    statuses = [line.strip() for line in single.splitlines() if line.startswith("  Status:")]
    assert statuses[-1] == "Status: completed"
    assert multiple.count("finished with status: completed") == 3
    assert "failed" not in stdout


# -- plugin discovery ----------------------------------------------------------------


def test_entry_points_advertise_every_example_plugin() -> None:
    """Every plugin id the examples use is discovered from the entry points, as its class."""
    expected = {
        "csv_loader": CsvLoader,
        "data_validator": DataValidator,
        "data_transformer": DataTransformer,
        "csv_writer": CsvWriter,
        "image_processor": ImageProcessor,
        "video_processor": VideoProcessor,
        "audio_processor": AudioProcessor,
        "aggregator": Aggregator,
        "http_client": HttpClient,
        "cache_reader": CacheReader,
    }
    manager = qtforge.PluginManager(discover=True)

    found = {plugin_id: type(manager.get_plugin(plugin_id).value()) for plugin_id in expected}

    assert found == expected


# -- tabular plugins -----------------------------------------------------------------


def test_load_file_reads_header_and_rows(tmp_path: Path) -> None:
    """load_file returns every row as a dict of strings, with the header and the count."""
    path = tmp_path / "in.csv"
    path.write_text("name,qty\nbolt,4\nnut,\n", encoding="utf-8")

    loaded = CsvLoader().load_file(str(path))

    assert loaded == {
        "rows": [{"name": "bolt", "qty": "4"}, {"name": "nut", "qty": ""}],
        "columns": ["name", "qty"],
        "row_count": 2,
        "source": str(path),
    }


def test_validate_separates_invalid_rows_and_parses_numbers() -> None:
    """validate keeps complete rows with numbers parsed and reports the others' errors."""
    rows = [
        {"name": "bolt", "qty": "4", "price": "0.25"},
        {"name": "", "qty": "2", "price": "1.5"},
        {"name": "nut", "qty": "many", "price": "0.1"},
        {"name": "washer", "qty": "10", "price": "0.05"},
    ]

    checked = DataValidator().validate(rows, ["name", "qty", "price"])

    assert checked["rows"] == [
        {"name": "bolt", "qty": 4, "price": 0.25},
        {"name": "washer", "qty": 10, "price": 0.05},
    ]
    assert checked["invalid_rows"] == [
        {"row_number": 2, "row": rows[1], "errors": ["name: missing"]},
        {"row_number": 3, "row": rows[2], "errors": ["qty: 'many' is not a number"]},
    ]
    assert checked["valid_count"] == 2
    assert checked["numeric_columns"] == ["qty", "price"]


def test_validate_honours_explicit_required_and_numeric_columns() -> None:
    """Given required and numeric columns, validate checks those and nothing else."""
    rows = [{"code": "7", "note": ""}, {"code": "x", "note": "fine"}]

    checked = DataValidator().validate(
        rows, ["code", "note"], required_columns=["code"], numeric_columns=["code"]
    )

    assert checked["rows"] == [{"code": 7, "note": ""}]
    assert [row["row_number"] for row in checked["invalid_rows"]] == [2]


def test_normalize_scales_numeric_columns_to_the_unit_range() -> None:
    """normalize maps each numeric column's min to 0 and max to 1, rounded; text stays."""
    rows = [
        {"name": "a", "size": 10, "weight": 3.0, "flat": 5},
        {"name": "b", "size": 15, "weight": 1.0, "flat": 5},
        {"name": "c", "size": 20, "weight": 2.0, "flat": 5},
    ]

    transformed = DataTransformer().transform(rows, "normalize")

    assert transformed["rows"] == [
        {"name": "a", "size": 0.0, "weight": 1.0, "flat": 0.0},
        {"name": "b", "size": 0.5, "weight": 0.0, "flat": 0.0},
        {"name": "c", "size": 1.0, "weight": 0.5, "flat": 0.0},
    ]
    assert transformed["transformed_columns"] == ["size", "weight", "flat"]
    assert rows[0]["size"] == 10, "the input rows must not be modified"


def test_normalize_rounds_to_four_places() -> None:
    """normalize rounds every scaled value to four decimal places."""
    rows = [{"x": 0}, {"x": 1}, {"x": 3}]

    transformed = DataTransformer().transform(rows, "normalize")

    assert [row["x"] for row in transformed["rows"]] == [0.0, 0.3333, 1.0]


def test_uppercase_changes_text_values_only() -> None:
    """uppercase upper-cases the strings and leaves the numbers alone."""
    transformed = DataTransformer().transform([{"name": "oslo", "n": 3}], "uppercase")

    assert transformed == {"rows": [{"name": "OSLO", "n": 3}], "transformed_columns": ["name"]}


def test_unknown_operation_raises_a_value_error_naming_it() -> None:
    """An unknown operation raises ValueError naming it and the known ones, never retried."""
    with pytest.raises(ValueError, match=r"unknown operation 'explode'.*'normalize'") as caught:
        DataTransformer().transform([{"x": 1}], "explode")

    assert getattr(caught.value, "non_retryable", False) is True


def test_save_file_writes_header_and_rows(tmp_path: Path) -> None:
    """save_file writes the given columns as the header, then one line per row."""
    path = tmp_path / "out.csv"
    rows = [{"name": "bolt", "qty": 4}, {"name": "nut", "qty": 0.5}]

    saved = CsvWriter().save_file(rows, str(path), columns=["name", "qty"])

    assert saved == {"output_path": str(path), "rows_written": 2}
    assert read_csv(path) == [["name", "qty"], ["bolt", "4"], ["nut", "0.5"]]


# -- media plugins -------------------------------------------------------------------


def write_wav(path: Path, seconds: float, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(1)
        audio.setframerate(rate)
        audio.writeframes(bytes([128]) * int(rate * seconds))


def test_process_batch_selects_files_by_extension(tmp_path: Path) -> None:
    """process_batch describes the directory's files of the format, in any case, only."""
    (tmp_path / "a.MP4").write_bytes(b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00")
    (tmp_path / "b.mp4").write_bytes(b"not a container")
    (tmp_path / "notes.txt").write_text("skip me", encoding="utf-8")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "c.mp4").write_bytes(b"too deep")

    processed = VideoProcessor().process_batch(str(tmp_path), "mp4")["videos_processed"]

    assert [(file["name"], file["size_bytes"], file["brand"]) for file in processed] == [
        ("a.MP4", 16, "isom"),
        ("b.mp4", 15, None),
    ]
    assert processed[1]["sha256"] == hashlib.sha256(b"not a container").hexdigest()


def test_image_process_batch_reads_jpeg_dimensions() -> None:
    """The image processor reads each shipped JPEG's width and height from its header."""
    processed = ImageProcessor().process_batch(str(EXAMPLES / "images"), "jpg")

    images = processed["images_processed"]
    sizes = {image["name"]: (image["width"], image["height"]) for image in images}
    assert sizes == {"aurora.jpg": (24, 24), "harbour.jpg": (32, 24), "sunset.jpg": (16, 32)}


def test_process_batch_rejects_a_missing_directory(tmp_path: Path) -> None:
    """process_batch raises NotADirectoryError naming a directory that does not exist."""
    with pytest.raises(NotADirectoryError, match="nowhere"):
        ImageProcessor().process_batch(str(tmp_path / "nowhere"), "jpg")


@pytest.mark.anyio
async def test_audio_process_batch_reads_wav_format(tmp_path: Path) -> None:
    """The async audio processor reports each WAV file's duration, rate and channels."""
    write_wav(tmp_path / "beep.wav", seconds=0.5)

    processed = await AudioProcessor().process_batch(str(tmp_path), "wav")

    (described,) = processed["audio_processed"]
    assert (described["duration_s"], described["sample_rate"], described["channels"]) == (
        0.5,
        8000,
        1,
    )


def test_combine_results_counts_per_kind_and_writes_a_report(tmp_path: Path) -> None:
    """combine_results totals files and bytes per kind and writes them to the report."""
    images = [{"name": "a.jpg", "size_bytes": 10}, {"name": "b.jpg", "size_bytes": 5}]
    audio = [{"name": "c.wav", "size_bytes": 100}]
    report_path = tmp_path / "report.json"

    combined = Aggregator().combine_results(
        images_processed=images, audio_processed=audio, report_path=str(report_path)
    )

    summary = {
        "total_files": 3,
        "total_bytes": 115,
        "by_kind": {
            "images": {"files": 2, "bytes": 15},
            "videos": {"files": 0, "bytes": 0},
            "audio": {"files": 1, "bytes": 100},
        },
    }
    assert combined == {"summary": summary, "report_path": str(report_path)}
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report == {"summary": summary, "files": {"images": images, "videos": [], "audio": audio}}


# -- web plugins ---------------------------------------------------------------------


@pytest.fixture
def flaky_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalApi]:
    """A local API that fails its first request with 503, with fetches pointed at it."""
    with LocalApi(failures=1) as api:
        monkeypatch.setenv(API_BASE_ENV, api.base_url)
        yield api


def test_redirect_url_swaps_scheme_and_host_for_the_base() -> None:
    """redirect_url keeps path and query but takes scheme, host and path prefix from base."""
    assert redirect_url("https://api.example.com/data?page=2", base="http://127.0.0.1:9/v1/") == (
        "http://127.0.0.1:9/v1/data?page=2"
    )


def test_redirect_url_without_a_base_keeps_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without QTFORGE_EXAMPLES_API_BASE, URLs are fetched as they are."""
    monkeypatch.delenv(API_BASE_ENV, raising=False)

    assert redirect_url(API_URL) == API_URL


def test_fetch_raises_on_a_server_error_and_then_succeeds(flaky_api: LocalApi) -> None:
    """fetch raises a retryable HttpStatusError for 503, and returns the JSON once served."""
    client = HttpClient()

    with pytest.raises(HttpStatusError, match="HTTP 503") as caught:
        client.fetch(API_URL)
    fetched = client.fetch(API_URL)

    assert (caught.value.status, caught.value.non_retryable) == (503, False)
    assert fetched == {"data": PAYLOAD, "status_code": 200, "url": f"{flaky_api.base_url}/data"}
    assert flaky_api.statuses == [503, 200]


def test_fetch_marks_a_client_error_non_retryable(flaky_api: LocalApi) -> None:
    """A 404 raises an HttpStatusError that tells qtforge not to retry."""
    with pytest.raises(HttpStatusError, match="HTTP 404") as caught:
        HttpClient().fetch("https://api.example.com/missing")

    assert (caught.value.status, caught.value.non_retryable) == (404, True)


def test_read_cached_serves_upstream_data_before_the_file(tmp_path: Path) -> None:
    """read_cached returns freshly fetched data if given, else the cache file's content."""
    cache = tmp_path / "cache.json"
    cache.write_text('{"items": [1]}', encoding="utf-8")
    reader = CacheReader()

    assert reader.read_cached(data={"items": [2]}, cache_path=str(cache)) == {
        "cached_data": {"items": [2]},
        "cache_source": "upstream",
    }
    assert reader.read_cached(cache_path=str(cache)) == {
        "cached_data": {"items": [1]},
        "cache_source": str(cache),
    }


def run_fetch_workflow(url: str, max_retries: int) -> dict[str, Any]:
    """Results of a one-step workflow fetching `url`, retried after 1 ms."""
    fetch = WorkflowStep("fetch_data", "http_client", "fetch")
    fetch.parameters = {"url": url}
    fetch.max_retries = max_retries
    fetch.retry_delay = 1
    workflow = Workflow("fetch", "Fetch").add_step(fetch)
    with PluginOrchestrator() as orchestrator:
        orchestrator.register_workflow(workflow).value()
        execution_id = orchestrator.execute_workflow("fetch").value()
        results: dict[str, Any] = orchestrator.get_workflow_results(execution_id).value()
    return results


def test_orchestrator_retries_fetch_after_a_server_error(flaky_api: LocalApi) -> None:
    """Run by qtforge, a fetch that gets 503 is retried and its data reaches the results."""
    results = run_fetch_workflow(API_URL, max_retries=3)

    step = results["steps"]["fetch_data"]
    assert (results["status"], step["status"], step["attempts"]) == ("completed", "completed", 2)
    assert results["data"]["data"] == PAYLOAD


def test_orchestrator_does_not_retry_a_client_error(flaky_api: LocalApi) -> None:
    """Run by qtforge, a fetch that gets 404 fails at once despite max_retries."""
    results = run_fetch_workflow("https://api.example.com/missing", max_retries=3)

    step = results["steps"]["fetch_data"]
    assert (results["status"], step["status"], step["attempts"]) == ("failed", "failed", 1)
    assert "HTTP 404" in step["error"]
