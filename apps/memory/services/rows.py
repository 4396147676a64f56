"""Row writes: validated against the columns, unique columns held by the database."""

from __future__ import annotations

import re
from typing import Any

from django.db import IntegrityError, transaction

from apps.memory.expressions import ColumnValue, Condition
from apps.memory.models import Column, Row, Table
from apps.memory.services.locks import lock_for_write
from apps.memory.validation import MemoryValidationError, check_row, data_path

UNIQUE_INDEX = re.compile(r"memory_t\d+_(c[0-9a-f]+)_uq")


def columns_of(table: Table) -> list[Column]:
    return list(Column.objects.filter(table=table))


def row_to_dict(row: Row, columns: list[Column]) -> dict[str, Any]:
    """The row as its fields by name (``id`` first); empty fields are ``None``."""
    return {"id": row.id, **{c.name: row.data.get(c.key) for c in columns}}


@transaction.atomic
def row_create(*, table: Table, data: dict[str, Any], workflow_id: int | None = None,
               run_id: str | None = None, from_text: bool = False) -> Row:
    lock_for_write(table.id)
    columns = columns_of(table)
    stored, _ = check_row(columns, data, from_text=from_text)
    check_unique(table, columns, stored)
    row = Row(table=table, data=stored, workflow_id=workflow_id, run_id=run_id)
    return save_checked(row, columns)


@transaction.atomic
def row_update(*, row: Row, data: dict[str, Any], from_text: bool = False) -> Row:
    """Change the fields ``data`` names; ``None`` empties a field."""
    lock_for_write(row.table_id)
    # Read under a row lock: two partial updates of one row must not undo each other.
    row = Row.objects.select_for_update().select_related("table").get(pk=row.pk)
    columns = columns_of(row.table)
    stored, cleared = check_row(columns, data, partial=True, from_text=from_text)
    check_unique(row.table, columns, stored, exclude_id=row.id)
    merged = {k: v for k, v in row.data.items() if k not in cleared}
    row.data = {**merged, **stored}
    return save_checked(row, columns)


@transaction.atomic
def row_delete(*, row: Row) -> None:
    lock_for_write(row.table_id)
    Row.objects.filter(pk=row.pk).delete()


def check_unique(table: Table, columns: list[Column], stored: dict[str, Any],
                 exclude_id: int | None = None) -> None:
    """A clear error before the insert; the unique index is what actually guarantees it."""
    errors = {}
    for column in columns:
        if column.unique and column.key in stored:
            holder = _holder(table, column, stored[column.key], exclude_id)
            if holder is not None:
                errors[data_path(column.name)] = unique_message(stored[column.key], holder)
    if errors:
        raise MemoryValidationError(errors)


def _holder(table: Table, column: Column, value: Any, exclude_id: int | None) -> int | None:
    rows = Row.objects.filter(table=table).filter(Condition(ColumnValue(column.key), "eq", value))
    if exclude_id is not None:
        rows = rows.exclude(pk=exclude_id)
    return rows.values_list("pk", flat=True).first()


def unique_message(value: Any, holder: int | None) -> str:
    where = f" in row {holder}" if holder is not None else ""
    return f"{value!r} is already taken{where} (the column is unique)"


def save_checked(row: Row, columns: list[Column]) -> Row:
    """Save in a savepoint; a unique index violation becomes an error naming the field."""
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError as exc:
        found = UNIQUE_INDEX.search(str(exc))
        column = next((c for c in columns if found and c.key == found.group(1)), None)
        if column is None:
            raise
        raise MemoryValidationError(
            {data_path(column.name): unique_message(row.data.get(column.key), None)}) from exc
    return row
