"""Client-side counting of SQL statements and commits (benchmark-only instrumentation).

``install()`` hooks every Django connection of this process: it counts statements by
verb and table, and commits — an outermost ``atomic`` commit, or a write statement run in
autocommit mode (which the database commits by itself). Counting costs time, so the
benchmarks count in separate runs from the timed ones.

Used by ``flowops_side.py`` (embedded) and, in Celery worker processes, by
``bench_tasks.py`` when ``FLOWOPS_BENCH_COUNT_DIR`` is set.
"""

from __future__ import annotations

import collections
import json
import os
import re
import threading
from pathlib import Path

_lock = threading.Lock()
COUNTS: collections.Counter = collections.Counter()
_TABLE = re.compile(r'^\s*(?:UPDATE|INSERT\s+INTO|DELETE\s+FROM)\s+"?(\w+)"?', re.I)
_FROM = re.compile(r'\bFROM\s+"?(\w+)"?', re.I)
_installed = False


def _wrapper(execute, sql, params, many, context):
    verb = sql.lstrip().split(None, 1)[0].upper() if sql else "?"
    connection = context["connection"]
    with _lock:
        COUNTS["statements"] += 1
        COUNTS[f"verb:{verb}"] += 1
        if verb in ("UPDATE", "INSERT", "DELETE"):
            m = _TABLE.match(sql)
            table = m.group(1) if m else "?"
            COUNTS[f"write:{verb}:{table}"] += 1
            if not connection.in_atomic_block:
                COUNTS["commits"] += 1
                COUNTS["commits:autocommit_write"] += 1
        elif verb == "SELECT":
            m = _FROM.search(sql)
            COUNTS[f"select:{m.group(1) if m else '?'}"] += 1
    return execute(sql, params, many, context)


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.signals import connection_created

    original_commit = BaseDatabaseWrapper.commit

    def commit(self):  # an outermost atomic block (or an explicit commit)
        with _lock:
            COUNTS["commits"] += 1
            COUNTS["commits:atomic"] += 1
        return original_commit(self)

    BaseDatabaseWrapper.commit = commit

    def attach(sender, connection, **kwargs):
        if _wrapper not in connection.execute_wrappers:
            connection.execute_wrappers.append(_wrapper)

    connection_created.connect(attach, weak=False)
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if _wrapper not in conn.execute_wrappers:
            conn.execute_wrappers.append(_wrapper)


def snapshot() -> dict[str, int]:
    with _lock:
        return dict(COUNTS)


def reset() -> None:
    with _lock:
        COUNTS.clear()


def dump_to_dir(directory: str | Path) -> None:
    path = Path(directory) / f"counts-{os.getpid()}.json"
    path.write_text(json.dumps(snapshot()), encoding="utf-8")
