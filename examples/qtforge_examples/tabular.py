"""CSV plugins for the data-processing pipeline: load, validate, transform, save.

Each step hands the next one a mapping, which qtforge merges into the next step's
input (rows travel under the ``rows`` key)::

    csv_loader.load_file(file_path)          -> rows (str values), columns, row_count, source
    data_validator.validate(rows, columns)   -> rows (numbers parsed), invalid_rows,
                                                valid_count, numeric_columns
    data_transformer.transform(rows, operation, numeric_columns=None)
                                             -> rows, transformed_columns
    csv_writer.save_file(rows, output_path, columns=None)
                                             -> output_path, rows_written

All methods are plain functions, so qtforge runs them in worker threads.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["CsvLoader", "CsvWriter", "DataTransformer", "DataValidator", "UnknownOperation"]

Row = dict[str, Any]

NORMALIZED_DIGITS = 4
"""Normalised values are rounded to this many decimal places."""


class CsvLoader:
    """Reads a CSV file with a header line into a list of rows."""

    def load_file(self, file_path: str) -> dict[str, Any]:
        """Read `file_path` (UTF-8, first line is the header).

        Returns:
            ``rows`` (one dict per line, values as strings; a missing trailing cell is
            ``""``), ``columns`` (the header), ``row_count`` and ``source``.
        """
        with open(file_path, newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file, restval="")
            rows = [dict(row) for row in reader]
            columns = list(reader.fieldnames or [])
        return {"rows": rows, "columns": columns, "row_count": len(rows), "source": file_path}


def parse_number(text: object) -> int | float | None:
    """`text` as an int or a finite float, or ``None`` if it is not a number."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int | float):
        return text if math.isfinite(text) else None
    if not isinstance(text, str):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def infer_numeric_columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[str]:
    """The columns in which most non-empty values are numbers."""
    numeric = []
    for column in columns:
        values = [row.get(column, "") for row in rows]
        filled = [value for value in values if value not in ("", None)]
        parsed = sum(parse_number(value) is not None for value in filled)
        if filled and parsed * 2 > len(filled):
            numeric.append(column)
    return numeric


class DataValidator:
    """Splits rows into valid and invalid ones, and parses the numeric columns."""

    def validate(
        self,
        rows: Sequence[Mapping[str, Any]],
        columns: Sequence[str],
        required_columns: Sequence[str] | None = None,
        numeric_columns: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Check every row.

        A row is invalid when a required column is empty or a numeric column does not
        hold a number.

        Args:
            rows: The rows to check, as `CsvLoader.load_file` returns them.
            columns: The columns every row should have.
            required_columns: Columns that must not be empty (default: all of them).
            numeric_columns: Columns that must hold numbers (default: the columns in
                which most values are numbers).

        Returns:
            ``rows`` (the valid rows, numeric values parsed into ``int``/``float``),
            ``invalid_rows`` (``{"row_number", "row", "errors"}`` each, with 1-based row
            numbers), ``valid_count`` and ``numeric_columns``.
        """
        required = list(columns if required_columns is None else required_columns)
        numeric = (
            infer_numeric_columns(rows, columns) if numeric_columns is None else numeric_columns
        )
        valid: list[Row] = []
        invalid: list[Row] = []
        for number, row in enumerate(rows, start=1):
            checked, errors = _check_row(row, required, numeric)
            if errors:
                invalid.append({"row_number": number, "row": dict(row), "errors": errors})
            else:
                valid.append(checked)
        return {
            "rows": valid,
            "invalid_rows": invalid,
            "valid_count": len(valid),
            "numeric_columns": list(numeric),
        }


def _check_row(
    row: Mapping[str, Any], required: Sequence[str], numeric: Sequence[str]
) -> tuple[Row, list[str]]:
    checked = dict(row)
    errors = [f"{column}: missing" for column in required if row.get(column) in ("", None)]
    for column in numeric:
        value = row.get(column)
        if value in ("", None):
            continue  # reported above if the column is required
        number = parse_number(value)
        if number is None:
            errors.append(f"{column}: {value!r} is not a number")
        else:
            checked[column] = number
    return checked, errors


class UnknownOperation(ValueError):
    """`DataTransformer.transform` was asked for an operation it does not know.

    Retrying cannot help, so qtforge does not retry it (``non_retryable``).
    """

    non_retryable = True


class DataTransformer:
    """Transforms validated rows: ``"normalize"`` or ``"uppercase"``."""

    def transform(
        self,
        rows: Sequence[Mapping[str, Any]],
        operation: str,
        numeric_columns: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Apply `operation` to every row; the input rows are left as they were.

        Operations:
            ``"normalize"``: min-max scale each numeric column to 0..1, rounded to
                `NORMALIZED_DIGITS` places (a constant column becomes 0.0; values that
                are not numbers are left alone).
            ``"uppercase"``: upper-case every text value.

        Args:
            rows: Rows whose numeric values are numbers (as `DataValidator` makes them).
            operation: The operation's name.
            numeric_columns: The columns to normalise (default: those whose values are
                all numbers).

        Returns:
            ``rows`` (the new rows) and ``transformed_columns``.

        Raises:
            UnknownOperation: `operation` is not one of the above.
        """
        operations: dict[str, Callable[[list[Row], Sequence[str] | None], list[str]]] = {
            "normalize": _normalize,
            "uppercase": _uppercase,
        }
        apply = operations.get(operation)
        if apply is None:
            known = ", ".join(repr(name) for name in operations)
            raise UnknownOperation(f"unknown operation {operation!r}: expected one of {known}")
        copies = [dict(row) for row in rows]
        changed = apply(copies, numeric_columns)
        return {"rows": copies, "transformed_columns": changed}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numeric_columns(rows: Sequence[Row]) -> list[str]:
    if not rows:
        return []
    return [column for column in rows[0] if all(_is_number(row.get(column)) for row in rows)]


def _normalize(rows: list[Row], numeric_columns: Sequence[str] | None) -> list[str]:
    columns = list(_numeric_columns(rows) if numeric_columns is None else numeric_columns)
    for column in columns:
        numbered = [row for row in rows if _is_number(row.get(column))]
        values = [row[column] for row in numbered]
        low, high = min(values, default=0), max(values, default=0)
        span = high - low
        for row in numbered:
            scaled = (row[column] - low) / span if span else 0.0
            row[column] = round(scaled, NORMALIZED_DIGITS)
    return columns


def _uppercase(rows: list[Row], _numeric_columns: Sequence[str] | None) -> list[str]:
    changed: dict[str, None] = {}
    for row in rows:
        for column, value in row.items():
            if isinstance(value, str):
                row[column] = value.upper()
                changed[column] = None
    return list(changed)


class CsvWriter:
    """Writes rows to a CSV file."""

    def save_file(
        self,
        rows: Sequence[Mapping[str, Any]],
        output_path: str,
        columns: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Write a header line and one line per row to `output_path` (UTF-8).

        Args:
            rows: The rows to write.
            output_path: The file to create or replace.
            columns: The header, in order (default: the keys of the rows, in order of
                first appearance).

        Returns:
            ``output_path`` and ``rows_written``.
        """
        header = list(columns) if columns is not None else _keys_in_order(rows)
        with open(output_path, "w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=header, extrasaction="ignore")
            if header:
                writer.writeheader()
            writer.writerows(rows)
        return {"output_path": output_path, "rows_written": len(rows)}


def _keys_in_order(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row))
    return list(keys)
