"""The SDK's reads keep each table's columns per process; any schema change, in this
process or another, committed or rolled back, is seen by the next read."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.memory import services
from apps.memory.models import Table
from flowops import memory
from tests.apps.memory.conftest import COMMITTING, child_env, column

ROOT = Path(settings.BASE_DIR)


@pytest.fixture
def tasks(db) -> Table:
    table = services.table_create(name="tasks", columns=[
        {"name": "title", "type": "text"}, {"name": "n", "type": "integer"}])
    services.row_create(table=table, data={"title": "a", "n": 1})
    return table


def memory_queries(call) -> tuple[Any, list[str]]:
    """What ``call`` returns, and the tables its queries read, in order (the SDK also
    checks the embedded SQLite database's migrations)."""
    with CaptureQueriesContext(connection) as captured:
        result = call()
    read = [re.search(r'FROM "(memory_\w+)"', q["sql"]) for q in captured.captured_queries]
    return result, [found.group(1) for found in read if found]


def test_a_repeated_query_reads_the_table_but_not_its_columns(tasks):
    _, first = memory_queries(lambda: memory.query("tasks"))

    rows, again = memory_queries(lambda: memory.query("tasks", where={"n": 1}))
    count, counted = memory_queries(lambda: memory.count("tasks", where={"n": 1}))

    assert first == ["memory_table", "memory_column", "memory_row"]
    assert again == counted == ["memory_table", "memory_row"]
    assert (rows, count) == ([{"id": rows[0]["id"], "title": "a", "n": 1}], 1)


def _add(table: Table) -> None:
    services.column_add(table=table, name="extra", default="x")


def _rename(table: Table) -> None:
    services.column_rename(column=column(table, "title"), name="heading")


def _remove(table: Table) -> None:
    services.column_remove(column=column(table, "title"), force=True)


def _retype(table: Table) -> None:
    services.column_change_type(column=column(table, "n"), type="text")


def _rename_table(table: Table) -> None:
    services.table_update(table=table, name="chores")
    services.table_create(name="tasks", columns=[{"name": "other", "type": "text"}])


def _recreate(table: Table) -> None:
    services.table_delete(table=table)
    services.table_create(name="tasks", columns=[{"name": "other", "type": "text"}])


@pytest.mark.parametrize(("change", "expected"), [
    (_add, [{"title": "a", "n": 1, "extra": "x"}]),
    (_rename, [{"heading": "a", "n": 1}]),
    (_remove, [{"n": 1}]),
    (_retype, [{"title": "a", "n": "1"}]),
    (_rename_table, []),
    (_recreate, []),
])
def test_every_schema_change_is_seen_by_the_next_query(tasks, change, expected):
    memory.query("tasks")

    change(tasks)

    assert [{k: v for k, v in r.items() if k != "id"} for r in memory.query("tasks")] == (
        expected)


def test_a_renamed_table_is_found_by_its_new_name_only(tasks):
    memory.query("tasks")

    services.table_update(table=tasks, name="chores")

    assert [r["title"] for r in memory.query("chores")] == ["a"]
    with pytest.raises(memory.MemoryValidationError) as caught:
        memory.query("tasks")
    assert caught.value.errors == {"table": "no table named 'tasks'"}


def test_a_rolled_back_change_leaves_no_stale_columns(tasks):
    # given the columns cached inside a change that is then rolled back
    with pytest.raises(RuntimeError), transaction.atomic():
        services.column_rename(column=column(tasks, "title"), name="heading")
        assert "heading" in memory.query("tasks")[0]
        raise RuntimeError("undo")

    # then the next query reads the columns as committed
    assert [r["title"] for r in memory.query("tasks")] == ["a"]


@COMMITTING
def test_a_change_made_by_another_process_is_seen():
    table = services.table_create(name="tasks", columns=[{"name": "title", "type": "text"}])
    services.row_create(table=table, data={"title": "a"})
    assert [r["title"] for r in memory.query("tasks")] == ["a"]

    done = subprocess.run([sys.executable, "-c", (
        "import django; django.setup()\n"
        "from apps.memory import services\n"
        "from apps.memory.models import Column\n"
        "services.column_rename(column=Column.objects.get(name='title'), name='heading')\n")],
        cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert [r["heading"] for r in memory.query("tasks")] == ["a"]


def test_a_type_change_is_seen_by_the_next_where(tasks):
    memory.count("tasks", where={"n": 1})

    services.column_change_type(column=column(tasks, "n"), type="text")

    assert memory.count("tasks", where={"n": "1"}) == 1
