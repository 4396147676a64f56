"""Per-table expression indexes for unique and indexed columns.

Each is partial (``WHERE table_id = N``), so it holds only that table's rows, and built on
exactly the expression the query builder emits (``apps.memory.expressions``). The index,
not a check in Python, is what keeps a unique column unique under concurrent writers.

PostgreSQL builds them ``CONCURRENTLY``, which cannot run inside a transaction: services
schedule ``index_sync`` with ``transaction.on_commit``, and anything may call it again
(it is idempotent). SQLite builds them plainly, inside the caller's transaction.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext

from django.db import IntegrityError, connection, transaction

from apps.memory.expressions import index_expression_sql
from apps.memory.models import Column, Row
from apps.memory.validation import MemoryValidationError

log = logging.getLogger("flowops.memory")
PREFIX = "memory_t"


def index_name(column: Column) -> str:
    suffix = "uq" if column.unique else "ix"
    return f"{PREFIX}{column.table_id}_{column.key}_{suffix}"


def index_owner(name: str) -> tuple[int, str] | None:
    """(table id, column key) of one of our index names, else None."""
    if not name.startswith(PREFIX):
        return None
    table_id, _, rest = name[len(PREFIX):].partition("_")
    key = rest.rsplit("_", 1)[0]
    return (int(table_id), key) if table_id.isdigit() and key else None


def schedule_index_sync(table_id: int) -> None:
    if connection.vendor == "postgresql":
        # Robust: the schema change has committed; a failed build is logged, the column
        # stays guarded by writers taking turns (services/locks.py), and the next
        # index_sync (any schema change of the table) builds it again.
        transaction.on_commit(lambda: index_sync(table_id=table_id), robust=True)
    else:
        index_sync(table_id=table_id)


def index_sync(*, table_id: int) -> None:
    """Create the indexes the table's columns want and drop the ones nobody wants."""
    wanted = {index_name(c): c for c in Column.objects.filter(table_id=table_id)
              if c.unique or c.indexed}
    existing = existing_indexes(f"{PREFIX}{table_id}\\_")
    for name, valid in existing.items():
        if name not in wanted or not valid:  # an invalid one is a failed concurrent build
            _drop(name)
    for name, column in wanted.items():
        if not existing.get(name):
            _create(name, column)


def existing_indexes(prefix: str) -> dict[str, bool]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT c.relname, i.indisvalid FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE i.indrelid = %s::regclass AND c.relname LIKE %s",
                [Row._meta.db_table, prefix + "%"])
        else:
            cursor.execute(
                "SELECT name, 1 FROM sqlite_master WHERE type = 'index' AND tbl_name = %s "
                "AND name LIKE %s ESCAPE '\\'", [Row._meta.db_table, prefix + "%"])
        return {name: bool(valid) for name, valid in cursor.fetchall()}


def _concurrently() -> str:
    return " CONCURRENTLY" if connection.vendor == "postgresql" else ""


def _create(name: str, column: Column) -> None:
    qn = connection.ops.quote_name
    sql = (f"CREATE {'UNIQUE ' if column.unique else ''}INDEX{_concurrently()} {qn(name)} "
           f"ON {qn(Row._meta.db_table)} (({index_expression_sql(column.key, connection)})) "
           f"WHERE table_id = {int(column.table_id)}")
    try:
        # On SQLite a savepoint, so a refused build leaves the caller's transaction usable.
        savepoint = transaction.atomic() if connection.vendor == "sqlite" else nullcontext()
        with savepoint, connection.cursor() as cursor:
            cursor.execute(sql)
    except IntegrityError as exc:
        if connection.vendor == "postgresql":
            _drop(name)  # a failed concurrent build leaves an invalid index behind
        raise MemoryValidationError({"unique": "rows share a value, so it cannot be unique"},
                                    message=f"column {column.name!r} cannot be unique: rows "
                                            "share a value") from exc
    log.info("memory: created index %s", name)


def _drop(name: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX{_concurrently()} IF EXISTS {connection.ops.quote_name(name)}")
