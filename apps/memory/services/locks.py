"""Row writes and schema changes of one table serialise on the table's row.

Writes take it shared (many writers at once), schema changes exclusively, so a type
change never misses a row inserted while it converts. SQLite needs nothing: its
transactions (IMMEDIATE in FlowOps' settings) already serialise every writer.
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
