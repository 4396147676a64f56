"""The one SQL expression for "the value of column X in a row", shared by the query
builder and the indexes, so that an index always serves the queries it exists for.

Measured on PostgreSQL over 100,000 rows: Django's ``data__k=`` compiles to
``data -> 'k'``, which an index on ``data ->> 'k'`` does not serve (a sequential scan,
83 ms against 0.45 ms). SQLite matches index expressions structurally too, and not
through bound parameters, so the key is written into the SQL as a literal (it is a
column key, ``c`` + hex digits, checked here).
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.db import models
from django.db.models import Expression, F, OrderBy
from django.db.models.sql import Query

KEY_PATTERN = re.compile(r"^c[0-9a-f]{1,19}$")


def _checked(key: str) -> str:
    if not KEY_PATTERN.match(key):
        raise ValueError(f"not a column key: {key!r}")
    return key


class ColumnValue(Expression):
    """``data -> 'key'`` (jsonb) on PostgreSQL, ``json_extract(data, '$.key')`` on SQLite."""

    output_field = models.JSONField()

    def __init__(self, key: str, source: Any = None):
        super().__init__()
        self.key = _checked(key)
        self.source = source if source is not None else F("data")

    def get_source_expressions(self) -> list[Any]:
        return [self.source]

    def set_source_expressions(self, exprs: list[Any]) -> None:
        (self.source,) = exprs

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list]:
        data, params = compiler.compile(self.source)
        if connection.vendor == "postgresql":
            return f"({data} -> '{self.key}')", params
        return f"json_extract({data}, '$.{self.key}')", params


class ColumnText(ColumnValue):
    """A text column's value as SQL text (``data ->> 'key'``), to read values back exactly:
    as JSON, SQLite's text ``1`` or ``null`` would come back as a number or None."""

    output_field = models.TextField()

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list]:
        data, params = compiler.compile(self.source)
        if connection.vendor == "postgresql":
            return f"({data} ->> '{self.key}')", params
        return f"json_extract({data}, '$.{self.key}')", params


class EmptyLast(OrderBy):
    """Order by a column's value with empty values last, ascending or descending, on both
    databases. Left to themselves PostgreSQL puts NULLs first when descending and SQLite
    first when ascending; and ``order_by="-score", limit=10`` should give scores.

    Reversing it (the admin does, for a click on a sorted column) flips only the direction:
    Django's ``OrderBy`` would turn NULLS LAST into NULLS FIRST.
    """

    def __init__(self, expression: Any, descending: bool = False):
        super().__init__(expression, descending=descending, nulls_last=True)

    def reverse_ordering(self) -> EmptyLast:
        self.descending = not self.descending
        return self


class Condition(Expression):
    """A boolean SQL fragment over one column's value, usable in ``.filter()``."""

    output_field = models.BooleanField()
    conditional = True

    def __init__(self, value: ColumnValue, op: str, operand: Any = None):
        super().__init__()
        self.value, self.op, self.operand = value, op, operand

    def get_source_expressions(self) -> list[Any]:
        return [self.value]

    def set_source_expressions(self, exprs: list[Any]) -> None:
        (self.value,) = exprs

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list]:
        lhs, params = compiler.compile(self.value)
        pg = connection.vendor == "postgresql"
        op, operand = self.op, self.operand
        if op == "is_null":
            return f"{lhs} IS {'' if operand else 'NOT '}NULL", params
        if op == "contains":
            # Text only: the value as text, matched case-insensitively on both databases.
            text = f"({lhs} #>> '{{}}')" if pg else lhs
            like = "ILIKE" if pg else "LIKE"
            return f"{text} {like} %s ESCAPE '\\'", [*params, "%" + _escape_like(operand) + "%"]
        if op == "in":
            marks = ", ".join([_placeholder(pg)] * len(operand)) or "NULL"
            return f"{lhs} IN ({marks})", [*params, *[_param(v, pg) for v in operand]]
        sql_op = {"eq": "=", "not": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}[op]
        sql = f"{lhs} {sql_op} {_placeholder(pg)}"
        if op == "not":  # like Python's !=: an empty value differs from any value
            sql = f"({sql} OR {lhs} IS NULL)"
        return sql, [*params, _param(operand, pg)]


def _placeholder(pg: bool) -> str:
    return "%s::jsonb" if pg else "%s"


def _param(value: Any, pg: bool) -> Any:
    if pg:
        return json.dumps(value)
    if isinstance(value, bool):  # json_extract gives 1/0 for true/false
        return int(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return value


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def index_expression_sql(key: str, connection: Any) -> str:
    """The SQL of ``ColumnValue(key)`` without table aliases, as an index definition needs."""
    from apps.memory.models import Row

    query = Query(Row, alias_cols=False)
    compiler = query.get_compiler(connection=connection)
    sql, params = ColumnValue(key).resolve_expression(query).as_sql(compiler, connection)
    assert not params, "the index expression takes no parameters"
    return sql
