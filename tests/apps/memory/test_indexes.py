"""What the database guarantees: unique columns under concurrent writers, and indexes
that serve the query builder's equality."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from apps.memory import services
from apps.memory.indexes import index_name
from apps.memory.models import Row
from apps.memory.selectors import row_filter
from tests.apps.memory.conftest import COMMITTING, ONLY_POSTGRES, column, is_postgres

pytestmark = COMMITTING


def index_names() -> set[str]:
    with connection.cursor() as cursor:
        if is_postgres():
            cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'memory_row'")
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                           "AND tbl_name = 'memory_row'")
        return {name for (name,) in cursor.fetchall()}


def test_unique_and_indexed_columns_get_their_indexes_and_lose_them_again():
    table = services.table_create(name="codes", columns=[
        {"name": "code", "type": "text", "unique": True},
        {"name": "city", "type": "text", "indexed": True}])
    code, city = column(table, "code"), column(table, "city")
    assert {index_name(code), index_name(city)} <= index_names()

    services.column_update(column=city, indexed=False)
    services.column_remove(column=code)

    assert not {n for n in index_names() if n.startswith(f"memory_t{table.id}_")}


def test_the_unique_index_refuses_a_duplicate_the_check_did_not_see():
    table = services.table_create(name="codes", columns=[
        {"name": "code", "type": "text", "unique": True}])
    code = column(table, "code")
    Row.objects.create(table=table, data={code.key: "A1"})  # a row written around the check

    with pytest.raises(services.MemoryValidationError) as caught:
        services.row_create(table=table, data={"code": "A1"})

    assert caught.value.errors["data.code"].startswith("'A1' is already taken")
    assert Row.objects.count() == 1


def test_rows_of_other_tables_do_not_clash_and_empty_values_repeat():
    a = services.table_create(name="a", columns=[{"name": "code", "unique": True}])
    b = services.table_create(name="b", columns=[{"name": "code", "unique": True}])
    for table in (a, b, a):
        services.row_create(table=table, data={"code": "x" if table is b else None})
    services.row_create(table=a, data={"code": "x"})

    assert Row.objects.count() == 4


@ONLY_POSTGRES
@pytest.mark.parametrize("index_built", [True, pytest.param(False, marks=ONLY_POSTGRES)])
def test_concurrent_writers_store_a_unique_value_once(index_built):
    # given a unique column (its index built, or not yet: PostgreSQL builds it after the
    # schema change commits) and 8 threads, each with its own connection
    table = services.table_create(name="claims", columns=[
        {"name": "ticket", "type": "integer", "unique": True}])
    if not index_built:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP INDEX "{index_name(column(table, "ticket"))}"')
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def write() -> None:
        try:
            start.wait()
            services.row_create(table=table, data={"ticket": 7})
            outcomes.append("stored")
        except services.MemoryValidationError as exc:
            outcomes.append(exc.errors["data.ticket"].split(" (")[0].split(" in row")[0])
        finally:
            connections.close_all()

    # when they all store the same value at once
    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # then exactly one row exists and every other writer got a clear error
    assert sorted(outcomes) == ["7 is already taken"] * 7 + ["stored"]
    assert Row.objects.filter(table=table).count() == 1


def test_an_equality_on_an_indexed_column_uses_its_index():
    table = services.table_create(name="big", columns=[
        {"name": "sku", "type": "text", "indexed": True}, {"name": "n", "type": "integer"}])
    sku, n = column(table, "sku"), column(table, "n")
    Row.objects.bulk_create([Row(table=table, data={sku.key: f"s{i}", n.key: i})
                             for i in range(2000)])
    rows = row_filter(table=table, where={"sku": "s1234"})

    plan = explain(rows)

    assert index_name(sku) in plan, plan
    assert [r.data[sku.key] for r in rows] == ["s1234"]


def explain(rows) -> str:
    sql, params = rows.query.sql_with_params()
    with connection.cursor() as cursor:
        if is_postgres():
            # 2,000 rows are few enough for a scan to look cheap: ask whether the planner
            # *can* use the index, not whether it prefers it today.
            cursor.execute("SET enable_seqscan = off")
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(line for (line,) in cursor.fetchall())
            cursor.execute("RESET enable_seqscan")
            return plan
        cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        return "\n".join(str(r) for r in cursor.fetchall())
