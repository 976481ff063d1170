"""Workflow files: YAML, TOML and JSON in, YAML and JSON out, every problem reported at once."""

from __future__ import annotations

import importlib.resources
import json
import pickle
import textwrap
from pathlib import Path

import attrs
import jsonschema
import pytest

import qtforge
from qtforge import PluginErrorCode, PluginManager
from qtforge.orchestration import (
    ExecutionMode,
    FileProblem,
    Workflow,
    WorkflowFileError,
    WorkflowStep,
)
from qtforge.orchestration._filecheck import step_file_fields, workflow_schema

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def full_workflow() -> Workflow:
    """A workflow that sets every field a file can hold to something other than its default."""
    workflow = (
        Workflow("everything", "Every field")
        .set_description("Sets every field")
        .set_execution_mode(ExecutionMode.Conditional)
        .set_timeout(120_000)
    )
    workflow.add_step(
        WorkflowStep(
            "fetch",
            "http",
            "get",
            parameters={"url": "https://example.com", "headers": {"a": [1, 2.5, None, True]}},
            timeout=None,
            max_retries=3,
            retry_delay=250,
            retry_backoff=1.5,
            retry_max_delay=4_000,
            retry_jitter=0.0,
            critical=False,
            executor="thread",
            name="Fetch",
            description="Downloads the data",
        )
    )
    workflow.add_step(
        WorkflowStep("parse", "parser", "parse", dependencies=["fetch"], condition="status == 200")
    )
    return workflow


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path, plugin_manager: PluginManager | None = None) -> list[FileProblem]:
    with pytest.raises(WorkflowFileError) as caught:
        Workflow.from_file(path, plugin_manager=plugin_manager)
    return list(caught.value.problems)


# -- round trips ---------------------------------------------------------------------


def test_to_dict_and_from_dict_round_trip_every_field() -> None:
    """A workflow built in Python, turned into a dict and back, equals the original, and the
    dict uses the file spellings of the step fields."""
    workflow = full_workflow()
    data = workflow.to_dict()
    assert Workflow.from_dict(data) == workflow
    assert data["mode"] == "conditional"
    assert set(data["steps"][0]) == {
        "id", "plugin", "method", "parameters", "timeout", "max_retries", "retry_delay",
        "retry_backoff", "retry_max_delay", "retry_jitter", "critical", "executor", "name",
        "description",
    }  # fmt: skip
    assert data["steps"][1] == {
        "id": "parse",
        "plugin": "parser",
        "method": "parse",
        "dependencies": ["fetch"],
        "condition": "status == 200",
    }


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_saved_and_loaded_workflow_equals_the_original(tmp_path: Path, suffix: str) -> None:
    """`to_file` then `from_file` gives back an equal workflow, in YAML and in JSON."""
    path = tmp_path / f"workflow{suffix}"
    full_workflow().to_file(path)
    assert Workflow.from_file(path) == full_workflow()


def test_toml_file_describes_the_same_workflow_as_yaml(tmp_path: Path) -> None:
    """A TOML file with the same fields loads to the same workflow as the YAML file."""
    toml = write(
        tmp_path,
        "w.toml",
        """
        id = "everything"
        name = "Every field"
        description = "Sets every field"
        mode = "conditional"
        timeout = 120000

        [[steps]]
        id = "fetch"
        plugin = "http"
        method = "get"
        timeout = 0
        max_retries = 3
        retry_delay = 250
        retry_backoff = 1.5
        retry_max_delay = 4000
        retry_jitter = 0.0
        critical = false
        executor = "thread"
        name = "Fetch"
        description = "Downloads the data"
        parameters = { url = "https://example.com", headers = { a = [1, 2.5] } }

        [[steps]]
        id = "parse"
        plugin = "parser"
        method = "parse"
        dependencies = ["fetch"]
        condition = "status == 200"
        """,
    )
    expected = full_workflow()
    expected.steps[0].timeout = 0  # TOML has no null; 0 also means "no bound"
    expected.steps[0].parameters = {"url": "https://example.com", "headers": {"a": [1, 2.5]}}
    assert Workflow.from_file(toml) == expected


def test_example_file_is_the_data_processing_example() -> None:
    """examples/data_processing.yaml loads to the workflow that data_processing.py builds."""
    workflow = Workflow("data_processing", "Data Processing Pipeline")
    workflow.set_description("Process CSV data through multiple stages")
    workflow.set_execution_mode(ExecutionMode.Sequential)
    for step_id, plugin, method, parameters, dependencies in [
        ("load", "csv_loader", "load_file", {"file_path": "input.csv"}, []),
        ("validate", "data_validator", "validate", {}, ["load"]),
        ("transform", "data_transformer", "transform", {"operation": "normalize"}, ["validate"]),
        ("save", "csv_writer", "save_file", {"output_path": "output.csv"}, ["transform"]),
    ]:
        workflow.add_step(
            WorkflowStep(step_id, plugin, method, parameters=parameters, dependencies=dependencies)
        )
    assert Workflow.from_file(EXAMPLES / "data_processing.yaml") == workflow


def test_from_dict_copies_its_input() -> None:
    """Changing the mapping after `from_dict` does not change the workflow built from it."""
    data = full_workflow().to_dict()
    workflow = Workflow.from_dict(data)
    data["steps"][0]["parameters"]["headers"]["a"].append("later")
    assert workflow == full_workflow()


def test_to_dict_refuses_what_a_file_cannot_hold() -> None:
    """Callable conditions, ``retry_on`` and parameters that are not plain data raise
    `ValueError` naming the step and field, instead of writing a file that loads differently."""
    step = WorkflowStep("s", "p", "m", condition=lambda inputs: True)
    with pytest.raises(ValueError, match=r"step 's': condition is a function"):
        Workflow("w").add_step(step).to_dict()
    step = WorkflowStep("s", "p", "m", retry_on=lambda error: True)
    with pytest.raises(ValueError, match="retry_on is code"):
        Workflow("w").add_step(step).to_dict()
    step = WorkflowStep("s", "p", "m", parameters={"shape": (1, 2)})
    with pytest.raises(ValueError, match=r"parameters.shape is a tuple"):
        Workflow("w").add_step(step).to_dict()


def test_to_file_refuses_toml_and_unknown_suffixes(tmp_path: Path) -> None:
    """Writing is YAML or JSON only; other suffixes raise `ValueError` saying so."""
    for name in ("w.toml", "w.txt"):
        with pytest.raises(ValueError, match=r"\.yaml, \.yml or \.json"):
            full_workflow().to_file(tmp_path / name)


# -- the schema ----------------------------------------------------------------------


def test_schema_ships_with_the_package_and_is_a_valid_json_schema() -> None:
    """qtforge/schema/workflow.schema.json is package data and a valid Draft 2020-12 schema
    that accepts a saved workflow."""
    source = importlib.resources.files("qtforge").joinpath("schema", "workflow.schema.json")
    schema = json.loads(source.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(full_workflow().to_dict(), schema)


def test_every_step_field_is_a_file_field() -> None:
    """Every `WorkflowStep` field except ``retry_on`` (code) is accepted in a file step, so a
    field added to `WorkflowStep` flows through the file format without further edits."""
    python_names = {field.name for field in attrs.fields(WorkflowStep)} - {"retry_on"}
    assert set(step_file_fields().values()) == python_names
    assert set(workflow_schema()["$defs"]["step"]["properties"]) == set(step_file_fields())


# -- problems ------------------------------------------------------------------------


def test_unknown_field_names_its_line_and_a_suggestion(tmp_path: Path) -> None:
    """A misspelt field is reported with the file, its line, its path and the likely spelling."""
    path = write(
        tmp_path,
        "w.yaml",
        """\
        id: w
        steps:
          - id: load
            plugin: p
            method: m
            timout: 5
        """,
    )
    [problem] = problems_of(path)
    assert (problem.file, problem.line, problem.field) == (str(path), 6, "steps.load.timout")
    assert problem.message == "unknown field 'timout' (did you mean 'timeout'?)"
    assert str(problem) == f"{path}:6: steps.load.timout: {problem.message}"


def test_wrong_types_and_values_name_the_field_and_what_was_expected(tmp_path: Path) -> None:
    """Wrong types, out-of-range numbers and unknown modes each point at their own line."""
    path = write(
        tmp_path,
        "w.yaml",
        """\
        id: w
        mode: paralel
        steps:
          - id: a
            plugin: p
            method: m
            timeout: fast
            max_retries: 1.5
            retry_jitter: 2
            critical: "no"
        """,
    )
    found = {(p.line, p.field): p.message for p in problems_of(path)}
    assert found == {
        (2, "mode"): "must be one of 'sequential', 'parallel', 'conditional', 'pipeline', "
        "not 'paralel'",
        (7, "steps.a.timeout"): "must be a number or null, not the string 'fast'",
        (8, "steps.a.max_retries"): "must be an integer, not the number 1.5",
        (9, "steps.a.retry_jitter"): "must be <= 1, not 2",
        (10, "steps.a.critical"): "must be true or false, not the string 'no'",
    }


def test_graph_problems_have_their_codes(tmp_path: Path) -> None:
    """Unknown dependencies, self-dependencies, cycles and duplicate ids are all reported,
    with the engine's error codes and the dependency's own line."""
    path = write(
        tmp_path,
        "w.yaml",
        """\
        id: w
        steps:
          - {id: a, plugin: p, method: m, dependencies: [c]}
          - {id: b, plugin: p, method: m, dependencies: [lod, b]}
          - {id: c, plugin: p, method: m, dependencies: [a]}
          - {id: c, plugin: p, method: m}
        """,
    )
    found = [(p.line, p.code, p.message) for p in problems_of(path)]
    assert found == [
        (
            3,
            PluginErrorCode.CircularDependency,
            "steps form a dependency cycle: a -> c -> a (each runs after the one before it)",
        ),
        (4, PluginErrorCode.DependencyMissing, "step 'b' depends on 'lod', which is not a step"),
        (4, PluginErrorCode.CircularDependency, "step 'b' depends on itself: b -> b"),
        (6, PluginErrorCode.InvalidConfiguration, "step id 'c' is also used by steps[2]"),
    ]


def test_missing_fields_and_empty_steps(tmp_path: Path) -> None:
    """Required fields that are missing and an empty step list are reported, all at once."""
    path = write(tmp_path, "w.json", '{\n  "name": "x",\n  "steps": []\n}\n')
    found = {(p.line, p.field, p.message) for p in problems_of(path)}
    assert found == {
        (1, "", "missing required field 'id'"),
        (3, "steps", "must list at least one step"),
    }


def test_json_problems_point_at_lines(tmp_path: Path) -> None:
    """JSON files get line numbers too."""
    path = write(
        tmp_path,
        "w.json",
        """\
        {
          "id": "w",
          "steps": [
            {"id": "a", "plugin": "p", "method": "m",
             "max_retries": -1}
          ]
        }
        """,
    )
    [problem] = problems_of(path)
    assert (problem.line, problem.field, problem.message) == (
        5,
        "steps.a.max_retries",
        "must be >= 0, not -1",
    )


def test_toml_problems_name_the_field_without_a_line(tmp_path: Path) -> None:
    """TOML has no positions to report, so a TOML problem names the field only."""
    path = write(tmp_path, "w.toml", 'id = "w"\n[[steps]]\nid = "a"\nplugin = "p"\nmethod = 3\n')
    [problem] = problems_of(path)
    assert (problem.line, problem.field) == (None, "steps.a.method")
    assert str(problem) == f"{path}: steps.a.method: must be a string, not the integer 3"


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("w.yaml", "id: w\nsteps: [\n  {id: a\n", 4),
        ("w.json", '{\n  "id": "w",\n  "steps": [,]\n}\n', 3),
        ("w.toml", 'id = "w"\nsteps = [\n', 3),
    ],
)
def test_syntax_errors_are_invalid_format_with_a_line(
    tmp_path: Path, name: str, text: str, line: int
) -> None:
    """A file that does not parse is one ``InvalidFormat`` problem with its line."""
    [problem] = problems_of(write(tmp_path, name, text))
    assert problem.code is PluginErrorCode.InvalidFormat
    assert problem.line == line


def test_missing_file_and_unknown_suffix(tmp_path: Path) -> None:
    """A missing file is ``FileNotFound``; an unknown suffix is ``InvalidFormat``."""
    [missing] = problems_of(tmp_path / "nope.yaml")
    assert missing.code is PluginErrorCode.FileNotFound
    [unknown] = problems_of(write(tmp_path, "w.ini", "id = w"))
    assert unknown.code is PluginErrorCode.InvalidFormat
    assert "expected one of .yaml, .yml, .json, .toml" in unknown.message


def test_the_error_is_a_plugin_error_listing_every_problem(tmp_path: Path) -> None:
    """`WorkflowFileError` is a `qtforge.PluginError` whose message lists every problem, and
    it survives pickling."""
    path = write(tmp_path, "w.yaml", "id: w\nmode: x\nsteps: [{id: a, plugin: p}]\n")
    with pytest.raises(qtforge.PluginError) as caught:
        Workflow.from_file(path)
    error = caught.value
    assert isinstance(error, WorkflowFileError)
    assert error.code is PluginErrorCode.InvalidConfiguration
    assert error.message.splitlines() == [
        f"workflow file {path} has 2 problems:",
        f"  {path}:2: mode: must be one of 'sequential', 'parallel', 'conditional', "
        "'pipeline', not 'x'",
        f"  {path}:3: steps.a: missing required field 'method'",
    ]
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.file, copy.problems, copy.message) == (error.file, error.problems, error.message)


# -- loading runs no code ------------------------------------------------------------


def test_yaml_python_tags_are_refused_without_running_anything(tmp_path: Path) -> None:
    """A YAML tag that would call a function under an unsafe loader is an ``InvalidFormat``
    problem, and the function never runs."""
    marker = tmp_path / "ran"
    path = write(
        tmp_path,
        "w.yaml",
        f"""\
        id: w
        steps:
          - id: a
            plugin: p
            method: m
            parameters:
              x: !!python/object/apply:pathlib.Path.touch [{str(marker)!r}]
        """,
    )
    [problem] = problems_of(path)
    assert problem.code is PluginErrorCode.InvalidFormat
    assert problem.line == 7
    assert not marker.exists()


def test_conditions_stay_strings_and_unsafe_ones_are_refused(tmp_path: Path) -> None:
    """A condition is kept as the string written; one using private names is refused."""
    path = write(
        tmp_path,
        "w.yaml",
        """\
        id: w
        steps:
          - {id: a, plugin: p, method: m, condition: "__import__('os').getpid() > 0"}
        """,
    )
    [problem] = problems_of(path)
    assert problem.field == "steps.a.condition"
    assert "uses '__import__', which conditions may not" in problem.message
    fine = Workflow.from_dict(
        {"id": "w", "steps": [{"id": "a", "plugin": "p", "method": "m", "condition": "n > 1"}]}
    )
    assert fine.steps[0].condition == "n > 1"


# -- plugins -------------------------------------------------------------------------


class Greeter:
    plugin_id = "greeter"

    def greet(self, name: str) -> str:
        return f"hello {name}"


def test_unknown_plugins_and_methods_are_checked_against_the_manager(tmp_path: Path) -> None:
    """With a plugin manager, a step naming an unknown plugin or method is a problem with the
    engine's code; without one, the file is only checked for itself."""
    path = write(
        tmp_path,
        "w.yaml",
        """\
        id: w
        steps:
          - {id: a, plugin: greeter, method: greet}
          - {id: b, plugin: greeter, method: shout}
          - {id: c, plugin: nobody, method: greet}
        """,
    )
    manager = PluginManager()
    manager.register_plugin(Greeter())
    found = [(p.line, p.field, p.code) for p in problems_of(path, manager)]
    assert found == [
        (4, "steps.b.method", PluginErrorCode.CommandNotFound),
        (5, "steps.c.plugin", PluginErrorCode.PluginNotFound),
    ]
    assert len(Workflow.from_file(path).steps) == 3


def test_plugins_section_loads_references_and_entry_points(tmp_path: Path) -> None:
    """``plugins`` entries load ``module:attr`` references (with the id they declare or the
    one given) and single entry points by name; ones that cannot load are problems."""
    path = write(
        tmp_path,
        "w.yaml",
        """\
        id: w
        plugins:
          - test_files:Greeter
          - {id: other, load: "test_files:Greeter"}
          - csv_loader
          - no_such_entry_point
          - no_such_module:Thing
        steps:
          - {id: a, plugin: greeter, method: greet}
          - {id: b, plugin: other, method: greet}
          - {id: c, plugin: csv_loader, method: load_file}
        """,
    )
    manager = PluginManager()
    found = [(p.line, p.code) for p in problems_of(path, manager)]
    assert found == [(6, PluginErrorCode.PluginNotFound), (7, PluginErrorCode.LoadFailed)]
    assert manager.list_plugins() == ["greeter", "other", "csv_loader"]
    assert type(manager.get_plugin("csv_loader").value()).__name__ == "CsvLoader"
