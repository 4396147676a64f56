"""CSV import (all or nothing; errors name the line and the header) and export."""

from __future__ import annotations

import csv
import io
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from apps.memory.models import Column, Row, Table
from apps.memory.services.locks import lock_for_write
from apps.memory.services.rows import check_unique, columns_of, save_checked
from apps.memory.services.schema import as_text
from apps.memory.validation import MemoryValidationError, check_row, data_path

SHOWN_ERRORS = 20


class CsvImportError(MemoryValidationError):
    """A refused import; ``errors`` keys read ``line 3, data.score`` (a value: the line, then
    the row error's own key) or ``line 1`` (a line as a whole: here the header)."""


@transaction.atomic
def csv_import(*, table: Table, source: str | io.TextIOBase, workflow_id: int | None = None,
               run_id: str | None = None) -> int:
    """Insert every line of ``source`` as a row, or none of them; returns the count."""
    lock_for_write(table.id)
    columns = columns_of(table)
    stream = io.StringIO(source) if isinstance(source, str) else source
    rows, errors = _parse(stream, columns)
    if errors:
        raise _error(errors)
    for line, stored in rows:
        try:
            check_unique(table, columns, stored)
        except MemoryValidationError as exc:
            errors.update({f"line {line}, {k}": v for k, v in exc.errors.items()})
    if errors:
        raise _error(errors)
    for line, stored in rows:
        try:  # a concurrent writer may take a unique value after the check above
            save_checked(Row(table=table, data=stored, workflow_id=workflow_id,
                             run_id=run_id), columns)
        except MemoryValidationError as exc:
            raise _error({f"line {line}, {k}": v for k, v in exc.errors.items()}) from exc
    return len(rows)


def _parse(stream: Any, columns: list[Column]) -> tuple[list[tuple[int, dict]], dict[str, str]]:
    errors: dict[str, str] = {}
    reader = csv.reader(stream, strict=True)  # an unclosed quote is an error, not data
    try:
        header = next(reader, None)
    except csv.Error as exc:
        return [], {"line 1": f"not valid CSV: {exc}"}
    if not header:
        return [], {"line 1": "the file is empty; expected a header line of column names"}
    header = [h.strip() for h in header]
    known = {c.name for c in columns}
    for name in header:
        if name not in known:
            errors["line 1"] = (f"unknown column {name!r} (the columns are: "
                                f"{', '.join(sorted(known)) or 'none'})")
        elif header.count(name) > 1:
            errors["line 1"] = f"column {name!r} appears twice"
    if errors:
        return [], errors
    return _lines(reader, header, columns, errors), errors


def _lines(reader: Any, header: list[str], columns: list[Column],
           errors: dict[str, str]) -> list[tuple[int, dict]]:
    rows: list[tuple[int, dict]] = []
    unique = [c for c in columns if c.unique]
    seen: dict[tuple[str, str], int] = {}
    line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors[f"line {line}"] = f"not valid CSV: {exc}"
            break
        if cells:
            stored = _line(line, cells, header, columns, errors)
            if stored is not None:
                _note_repeats(line, stored, unique, seen, errors)
                rows.append((line, stored))
        line = reader.line_num + 1
    return rows


def _line(line: int, cells: list[str], header: list[str], columns: list[Column],
          errors: dict[str, str]) -> dict | None:
    if len(cells) != len(header):
        errors[f"line {line}"] = f"{len(cells)} values for {len(header)} columns"
        return None
    try:
        stored, _ = check_row(columns, dict(zip(header, cells, strict=True)), from_text=True)
    except MemoryValidationError as exc:
        errors.update({f"line {line}, {k}": v for k, v in exc.errors.items()})
        return None
    return stored


def _note_repeats(line: int, stored: dict, unique: list[Column],
                  seen: dict[tuple[str, str], int], errors: dict[str, str]) -> None:
    for column in unique:
        if column.key in stored:
            mark = (column.key, repr(stored[column.key]))
            if mark in seen:
                errors[f"line {line}, {data_path(column.name)}"] = (
                    f"{stored[column.key]!r} repeats line {seen[mark]} (the column is unique)")
            else:
                seen[mark] = line


def _error(errors: dict[str, str]) -> CsvImportError:
    shown = list(errors.items())[:SHOWN_ERRORS]
    more = len(errors) - len(shown)
    text = "; ".join(f"{k}: {v}" for k, v in shown) + (f"; and {more} more" if more > 0 else "")
    return CsvImportError(errors, message=f"nothing imported: {text}")


def csv_export(*, table: Table, rows: QuerySet[Row] | None = None) -> str:
    """The table as CSV: a header of column names, empty cells for empty values.

    ``rows``: only these rows of the table, in their order (the admin's filtered list).
    """
    columns = columns_of(table)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([c.name for c in columns])
    rows = Row.objects.order_by("pk") if rows is None else rows
    for data in rows.filter(table=table).values_list("data", flat=True):
        writer.writerow(["" if data.get(c.key) is None else as_text(data[c.key], c.type)
                         for c in columns])
    return out.getvalue()
