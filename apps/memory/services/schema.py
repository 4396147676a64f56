"""Changing a table's columns while it holds rows.

Rows are keyed by column key, so a rename touches no row. Adding fills the default into
existing rows; removing strips the value (refused while rows hold one, unless forced);
a type change converts every value or, if any does not convert, changes nothing and
names the rows that block it. Each change locks the table against concurrent row writes.

Errors are keyed by the part of the column's definition that is refused (``type``,
``unique``, ``force``...), never by the column's name, which could read as one of those.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from django.db import IntegrityError, connection, transaction

from apps.memory.indexes import schedule_index_sync
from apps.memory.models import Column, Row, Table
from apps.memory.services.locks import lock_table
from apps.memory.services.tables import check_name, schema_changed
from apps.memory.validation import TEXTUAL, MemoryValidationError, coerce

T = Column.Type
UNSET: Any = object()
SHOWN_ROWS = 10
BATCH = 500


class SchemaChangeError(MemoryValidationError):
    """A column change refused because of the rows; ``rows`` are the ids that block it,
    ``field`` the part of the definition refused."""

    http_status = 409  # the request is fine; the table's current rows are in the way

    def __init__(self, column: Column, field: str, why: str, rows: list[int]):
        self.rows = rows
        text = f"{why} (rows {_ids(rows)})" if rows else why
        super().__init__({field: text}, message=f"column {column.name!r}, {field}: {text}")
        self.extra["rows"] = rows


def _ids(rows: list[int]) -> str:
    shown = ", ".join(map(str, rows[:SHOWN_ROWS]))
    more = len(rows) - SHOWN_ROWS
    return f"{shown} and {more} more" if more > 0 else shown


@transaction.atomic
def column_add(*, table: Table, name: str, type: str = T.TEXT, options: list | None = None,
               required: bool = False, default: Any = None, unique: bool = False,
               indexed: bool = False) -> Column:
    """A new column; existing rows get its default."""
    lock_table(table.id, exclusive=True)
    column = Column(table=table, name=check_name(name, "name"), type=_type(type),
                    options=_options(type, options), required=bool(required),
                    unique=bool(unique), indexed=bool(indexed))
    _check_flags(column)
    column.default = _default(column, default)
    rows = list(Row.objects.filter(table=table).values_list("pk", flat=True)[:SHOWN_ROWS + 1])
    if required and column.default is None and rows:
        raise SchemaChangeError(column, "required", "a required column needs a default for "
                                                    "the rows that exist", rows)
    if unique and column.default is not None and len(rows) > 1:
        raise SchemaChangeError(column, "unique", "a unique column cannot give every row the "
                                                  "same default", rows)
    last = Column.objects.filter(table=table).order_by("-position").first()
    column.position = last.position + 1 if last else 0
    _save(column)
    if column.default is not None:
        _fill(column, column.default)
    schema_changed(table.id)
    schedule_index_sync(table.id)
    return column


@transaction.atomic
def column_rename(*, column: Column, name: str) -> Column:
    """Only the name changes: rows are keyed by the column's immutable key."""
    lock_table(column.table_id, exclusive=True)
    column = _stored(column)
    column.name = check_name(name, "name")
    _save(column)
    schema_changed(column.table_id)
    return column


@transaction.atomic
def column_remove(*, column: Column, force: bool = False) -> None:
    """Refused while rows hold a value in it, unless ``force`` (which drops the values)."""
    lock_table(column.table_id, exclusive=True)
    column = _stored(column)
    holding = [pk for pk, _ in _values(column)]
    if holding and not force:
        raise SchemaChangeError(column, "force", "rows hold values in this column; remove it "
                                                 "with force to drop them", holding)
    if holding:
        _strip(column)
    table_id = column.table_id
    column.delete()
    schema_changed(table_id)
    schedule_index_sync(table_id)


@transaction.atomic
def column_change_type(*, column: Column, type: str, options: list | None = None) -> Column:
    """Convert every value to ``type``; if any does not convert, change nothing."""
    lock_table(column.table_id, exclusive=True)
    column = _stored(column)
    target = Column(table_id=column.table_id, key=column.key, name=column.name,
                    type=_type(type), options=_options(type, options), unique=column.unique,
                    indexed=column.indexed, required=column.required)
    _check_flags(target)
    # A new type is refused on "type"; new options of a choice column on "options".
    field = "type" if target.type != column.type else "options"
    converted, blocking = {}, defaultdict(list)
    for pk, value in _values(column):
        try:
            converted[pk] = convert(value, column.type, target)
        except ValueError as exc:
            blocking[str(exc)].append(pk)
    if blocking:
        why, rows = next(iter(blocking.items()))
        all_rows = sorted(pk for pks in blocking.values() for pk in pks)
        raise SchemaChangeError(column, field, f"cannot change {column.type} to {target.type}: "
                                              f"{why}", all_rows)
    if target.unique:
        _refuse_duplicates(target, converted.items(), field)
    _rewrite(column, converted, field)
    column.type, column.options = target.type, target.options
    column.default = _converted_default(column.default, column, target, field)
    column.save()
    schema_changed(column.table_id)
    return column


@transaction.atomic
def column_update(*, column: Column, required: bool | None = None, default: Any = UNSET,
                  unique: bool | None = None, indexed: bool | None = None,
                  options: list | None = None) -> Column:
    """Change a column's rules; refused while existing rows would break them."""
    lock_table(column.table_id, exclusive=True)
    column = _stored(column)
    if options is not None:  # the new options first; the other rules then apply on top
        column = column_change_type(column=column, type=column.type, options=options)
    values = list(_values(column))
    if required and not column.required:
        holding = {pk for pk, _ in values}
        empty = list(Row.objects.filter(table_id=column.table_id).exclude(
            pk__in=holding).values_list("pk", flat=True))
        if empty:
            raise SchemaChangeError(column, "required", "rows have no value, so it cannot be "
                                                        "required", empty)
    for flag, value in (("required", required), ("unique", unique), ("indexed", indexed)):
        if value is not None:
            setattr(column, flag, bool(value))
    _check_flags(column)
    if column.unique:
        _refuse_duplicates(column, values, "unique")
    if default is not UNSET:
        column.default = _default(column, default)
    column.save()
    schema_changed(column.table_id)
    schedule_index_sync(column.table_id)
    return column


# -- conversions -----------------------------------------------------------------------
def convert(value: Any, source: str, target: Column) -> Any:
    """One stored value of type ``source`` as ``target`` stores it; ValueError if it can't."""
    if target.type == T.JSON:
        return value
    if target.type in TEXTUAL:
        text = as_text(value, source)
        return coerce(target, text) if target.type != T.LONG_TEXT else text
    return coerce(target, value, from_text=isinstance(value, str))


def as_text(value: Any, source: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False)


def _converted_default(default: Any, old: Column, target: Column, field: str) -> Any:
    if default is None:
        return None
    try:
        return convert(default, old.type, target)
    except ValueError:
        raise MemoryValidationError({field: f"its default {default!r} does not convert to "
                                            f"{target.type}; change the default first"}
                                    ) from None


# -- checks ----------------------------------------------------------------------------
def _type(value: Any) -> str:
    if value not in T.values:
        raise MemoryValidationError({"type": f"{value!r} is not a column type "
                                             f"({', '.join(T.values)})"})
    return value


def _options(type: str, options: Any) -> list:
    if type != T.CHOICE:
        if options:
            raise MemoryValidationError({"options": "only choice columns have options"})
        return []
    if (not isinstance(options, list) or not options
            or not all(isinstance(o, str) and o for o in options)
            or len(set(options)) != len(options)):
        raise MemoryValidationError({"options": "a choice column needs a list of distinct, "
                                                "non-empty texts"})
    return options


def _check_flags(column: Column) -> None:
    if (column.unique or column.indexed) and column.type == T.JSON:
        field = "unique" if column.unique else "indexed"
        raise MemoryValidationError({field: "a json column cannot be unique or indexed"})


def _default(column: Column, default: Any) -> Any:
    try:
        return coerce(column, default)
    except ValueError as exc:
        raise MemoryValidationError({"default": str(exc)}) from None


def _refuse_duplicates(column: Column, values: Any, field: str) -> None:
    seen: dict[str, list[int]] = defaultdict(list)
    for pk, value in values:
        seen[json.dumps(value, sort_keys=True)].append(pk)
    rows = sorted(pk for pks in seen.values() if len(pks) > 1 for pk in pks)
    if rows:
        raise SchemaChangeError(column, field, "rows share values, so it cannot be unique", rows)


def _stored(column: Column) -> Column:
    """The column as the database has it (under the table's lock): a caller's instance may
    carry unsaved edits (a form's), which a whole-object save would write unchecked."""
    return Column.objects.get(pk=column.pk)


def _save(column: Column) -> None:
    try:
        with transaction.atomic():
            column.save()
    except IntegrityError:
        raise MemoryValidationError({"name": f"the table already has a column named "
                                             f"{column.name!r}"}) from None


# -- row data ----------------------------------------------------------------------------
def _values(column: Column) -> Any:
    """(row id, value) of the rows that hold a value in ``column``, by row id."""
    rows = Row.objects.filter(table_id=column.table_id).order_by("pk").values_list("pk", "data")
    for pk, data in rows.iterator(chunk_size=BATCH):
        if data.get(column.key) is not None:
            yield pk, data[column.key]


def _rewrite(column: Column, values: dict[int, Any], field: str) -> None:
    pks = sorted(values)
    for start in range(0, len(pks), BATCH):
        rows = list(Row.objects.filter(pk__in=pks[start:start + BATCH]))
        for row in rows:
            row.data = {**row.data, column.key: values[row.pk]}
        try:
            with transaction.atomic():
                Row.objects.bulk_update(rows, ["data"])
        except IntegrityError:
            raise SchemaChangeError(column, field, "converted values would repeat in a unique "
                                                  "column", pks) from None


def _fill(column: Column, value: Any) -> None:
    path = f"$.{column.key}"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "UPDATE memory_row SET data = data || jsonb_build_object(%s::text, %s::jsonb) "
                "WHERE table_id = %s AND (data -> %s) IS NULL",
                [column.key, json.dumps(value), column.table_id, column.key])
        else:
            cursor.execute(
                "UPDATE memory_row SET data = json_set(data, %s, json(%s)) "
                "WHERE table_id = %s AND json_type(data, %s) IS NULL",
                [path, json.dumps(value), column.table_id, path])


def _strip(column: Column) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("UPDATE memory_row SET data = data - %s WHERE table_id = %s",
                           [column.key, column.table_id])
        else:
            cursor.execute("UPDATE memory_row SET data = json_remove(data, %s) "
                           "WHERE table_id = %s", [f"$.{column.key}", column.table_id])
