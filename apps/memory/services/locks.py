"""Row writes and schema changes of one table serialise on the table's row.

Writes take it shared (many writers at once), schema changes exclusively, so a type
change never misses a row inserted while it converts. While a unique column's index is
not built yet (PostgreSQL builds it concurrently, after the schema change commits) only
the check in Python guards the column, so writers then take the row exclusively, one at
a time. SQLite needs nothing: its transactions (IMMEDIATE in FlowOps' settings) already
serialise every writer.
"""

from __future__ import annotations

from django.db import connection

from apps.memory.models import Table


def lock_table(table_id: int, *, exclusive: bool) -> None:
    if connection.vendor != "postgresql":
        return
    mode = "UPDATE" if exclusive else "SHARE"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {Table._meta.db_table} WHERE id = %s FOR {mode}",
                       [table_id])


def lock_for_write(table_id: int) -> None:
    if connection.vendor != "postgresql":
        return
    lock_table(table_id, exclusive=not unique_indexes_ready(table_id))


def unique_indexes_ready(table_id: int) -> bool:
    from apps.memory.indexes import PREFIX, existing_indexes, index_name
    from apps.memory.models import Column

    unique = list(Column.objects.filter(table_id=table_id, unique=True))
    if not unique:
        return True
    built = existing_indexes(f"{PREFIX}{table_id}\\_")
    return all(built.get(index_name(c)) for c in unique)
