"""Reading memory tables: the query builder behind ``memory.query``, the API and the admin.

``where`` maps field names to a value (equality) or to operators::

    {"type": "question", "score": {"gte": 3}, "tag": {"in": ["a", "b"]},
     "note": {"is_null": True}, "status": {"not": "closed"}, "content": {"contains": "refund"}}

Operands are checked and converted like written values, so ``{"day": {"gte": "2024-01-01"}}``
compares dates. Errors are keyed ``where.<field>``, ``order_by`` and ``limit``. Every
condition is built on ``ColumnValue``, the expression the indexes are built on
(``apps.memory.indexes``).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.memory.expressions import ColumnText, ColumnValue, Condition, EmptyLast
from apps.memory.models import Column, Row, Table
from apps.memory.validation import TEXTUAL, MemoryValidationError, coerce

OPERATORS = {"eq", "not", "lt", "lte", "gt", "gte", "contains", "in", "is_null"}
SYSTEM_FIELDS = {"id": "pk", "created_at": "created_at", "updated_at": "updated_at"}
MAX_LIMIT = 10_000
CACHED_TABLES = 1000
SHOWN_VALUES = 50

# table id -> (schema_version, columns). Whole entries are swapped, never edited, so
# threads may share it.
_columns: dict[int, tuple[Any, list[Column]]] = {}


def table_columns(table: Table) -> list[Column]:
    """The columns of ``table`` (as just read from the database), from a per-process cache.

    Entries are checked against the table's ``schema_version``, which every schema
    change, in any process, replaces in its own transaction: reading the table is the
    check, and the columns are read again only after a change.
    """
    cached = _columns.get(table.pk)
    if cached is not None and cached[0] == table.schema_version:
        return cached[1]
    columns = list(Column.objects.filter(table=table))
    if len(_columns) >= CACHED_TABLES:
        _columns.clear()  # tables deleted long ago would otherwise stay forever
    _columns[table.pk] = (table.schema_version, columns)
    return columns


def row_filter(*, table: Table, where: dict[str, Any] | None = None,
               columns: list[Column] | None = None) -> QuerySet[Row]:
    """The table's rows matching ``where``; unknown fields and bad operands raise."""
    columns = columns if columns is not None else list(Column.objects.filter(table=table))
    by_name = {c.name: c for c in columns}
    rows = Row.objects.filter(table=table)
    errors: dict[str, str] = {}
    if where is not None and not isinstance(where, dict):
        raise MemoryValidationError({"where": "expected a dict of field: condition"})
    for name, spec in (where or {}).items():
        try:
            rows = rows.filter(_condition(name, spec, by_name))
        except ValueError as exc:
            errors[f"where.{name}"] = str(exc)
    if errors:
        raise MemoryValidationError(errors)
    return rows


def row_list(*, table: Table, where: dict[str, Any] | None = None,
             order_by: str | list[str] | None = None, limit: int | None = None,
             columns: list[Column] | None = None) -> tuple[list[Column], QuerySet[Row]]:
    columns = columns if columns is not None else list(Column.objects.filter(table=table))
    rows = row_filter(table=table, where=where, columns=columns)
    rows = rows.order_by(*_ordering(order_by, columns))
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_LIMIT:
            raise MemoryValidationError({"limit": f"expected an integer from 0 to {MAX_LIMIT}"})
        rows = rows[:limit]
    return columns, rows


def column_values(*, column: Column, leave_out: list[str], limit: int = SHOWN_VALUES
                  ) -> list[str]:
    """Up to ``limit`` distinct values that rows hold in a text column, other than
    ``leave_out``, sorted: one DISTINCT over the table's rows, read as text."""
    value = ColumnValue(column.key)
    rows = Row.objects.filter(table_id=column.table_id).filter(
        Condition(value, "is_null", False))
    if leave_out:
        rows = rows.exclude(Condition(value, "in", list(leave_out)))
    found = rows.annotate(text=ColumnText(column.key)).order_by("text").values_list(
        "text", flat=True).distinct()[:limit]
    return [str(text) for text in found]


def _condition(name: str, spec: Any, by_name: dict[str, Column]) -> Any:
    if name in SYSTEM_FIELDS and name not in by_name:
        return _system_condition(name, spec)
    column = by_name.get(name)
    if column is None:
        raise ValueError(f"unknown field (the columns are: {', '.join(by_name) or 'none'})")
    value = ColumnValue(column.key)
    specs = spec if _is_operators(spec) else {"eq": spec}
    conditions = [_one(column, value, op, operand) for op, operand in specs.items()]
    result = conditions[0]
    for more in conditions[1:]:
        result &= more
    return result


def _is_operators(spec: Any) -> bool:
    return isinstance(spec, dict) and bool(spec) and set(spec) <= OPERATORS


def _one(column: Column, value: ColumnValue, op: str, operand: Any) -> Any:
    if op == "is_null":
        if not isinstance(operand, bool):
            raise ValueError("is_null takes true or false")
        return Condition(value, op, operand)
    if op == "contains":
        if column.type not in TEXTUAL or not isinstance(operand, str):
            raise ValueError("contains works on text columns, with a text operand")
        return Condition(value, op, operand)
    if op == "in":
        if not isinstance(operand, list | tuple):
            raise ValueError("in takes a list of values")
        return Condition(value, op, [_operand(column, v) for v in operand])
    if operand is None:
        # "equals nothing" reads as is_null, as Python's == None would.
        return Condition(value, "is_null", op == "eq")
    return Condition(value, op, _operand(column, operand))


def _operand(column: Column, operand: Any) -> Any:
    # A choice operand need not be a current option: old rows may hold a removed one.
    check = column if column.type != Column.Type.CHOICE else Column(type=Column.Type.TEXT)
    try:
        return coerce(check, operand)
    except ValueError as exc:
        raise ValueError(f"bad operand: {exc}") from None


def _system_condition(name: str, spec: Any) -> Any:
    from django.db.models import Q

    field = SYSTEM_FIELDS[name]
    specs = spec if _is_operators(spec) else {"eq": spec}
    lookups = {"eq": "exact", "lt": "lt", "lte": "lte", "gt": "gt", "gte": "gte", "in": "in",
               "is_null": "isnull"}
    q = Q()
    for op, operand in specs.items():
        _check_system_operand(name, field, op, operand)
        if op == "not":
            q &= ~Q(**{field: operand})
        elif op in lookups:
            q &= Q(**{f"{field}__{lookups[op]}": operand})
        else:
            raise ValueError(f"{op} does not apply to {name}")
    return q


def _check_system_operand(name: str, field: str, op: str, operand: Any) -> None:
    """A bad id or time would raise Django's own error when the query runs: name it."""
    from django.core.exceptions import ValidationError

    if op == "is_null":
        return
    model_field = Row._meta.pk if field == "pk" else Row._meta.get_field(field)
    for value in operand if op == "in" and isinstance(operand, list | tuple) else [operand]:
        try:
            model_field.to_python(value)
        except ValidationError:
            raise ValueError(f"{value!r} is not a valid {name}") from None


def _ordering(order_by: str | list[str] | None, columns: list[Column]) -> list[Any]:
    if order_by is None:
        return ["pk"]
    names = [order_by] if isinstance(order_by, str) else order_by
    by_name = {c.name: c for c in columns}
    ordering: list[Any] = []
    for raw in names:
        desc = isinstance(raw, str) and raw.startswith("-")
        name = raw[1:] if desc else raw
        if name in by_name:
            ordering.append(EmptyLast(ColumnValue(by_name[name].key), descending=desc))
        elif name in SYSTEM_FIELDS:
            ordering.append(f"{'-' if desc else ''}{SYSTEM_FIELDS[name]}")
        else:
            raise MemoryValidationError({"order_by": f"unknown field {raw!r}"})
    return [*ordering, "pk"]
