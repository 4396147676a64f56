"""Benchmark 5: memory-table queries over 100,000 rows against a plain model, and inserts.

A memory table ``orders`` (columns ``sku`` text indexed, ``amount`` number indexed,
``note`` text) and a plain Django model with the same fields as real indexed columns, in
the same PostgreSQL database (``flowops_bench_memory``, or ``$FLOWOPS_BENCH_MEMORY_DB``,
dropped and created afresh), each
loaded with the same 100,000 rows. Then, interleaved, ``--queries`` times each:

* equality on the indexed text column: ``row_filter(where={"sku": ...})`` (the query
  builder, with the table's columns already read) and ``memory.query(...)`` (the SDK: the
  table and its columns looked up too) against ``PlainOrder.objects.filter(sku=...)``;
* a range on the number column selecting ~5 rows: ``{"amount": {"gte": x, "lt": x + 5}}``
  against ``filter(amount__gte=x, amount__lt=x + 5)``.

Each query is evaluated (``list(...)``). Target: the memory table within 2x of the plain
model (medians and p95). The plans are recorded (``EXPLAIN``) to show the index is used.
Then SDK insert throughput: ``memory.store`` of ``--inserts`` rows (outside a run, each
validated and committed) against ``PlainOrder.objects.create``.

Rows are loaded with ``bulk_create`` (the benchmark's fixture; the write path is what
the insert measurement times).

    .venv/bin/python benchmarks/bench_memory.py [--rows 100000] [--queries 300]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

# Another name keeps concurrent runs (other worktrees) from dropping each other's database.
DB_NAME = os.environ.get("FLOWOPS_BENCH_MEMORY_DB", "flowops_bench_memory")
os.environ.update({
    "DJANGO_SETTINGS_MODULE": "settings.production", "DJANGO_SECRET_KEY": "bench",
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
    "REDIS_URL": "redis://127.0.0.1:6379/14",
})

from _common import (  # noqa: E402
    ROOT,
    VENV_PY,
    code_version,
    machine_info,
    pg_database_fresh,
    save_result,
)

# This tree's code: the shared venv's editable install points at another checkout.
sys.path.insert(0, str(ROOT))


def fresh_database() -> None:
    pg_database_fresh(DB_NAME)
    subprocess.run([str(VENV_PY), "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                   check=True)


def plain_model():
    from django.db import connection, models

    class PlainOrder(models.Model):
        sku = models.TextField(db_index=True)
        amount = models.FloatField(db_index=True)
        note = models.TextField()

        class Meta:
            app_label = "memory"
            db_table = "bench_plain_order"

    with connection.schema_editor() as editor:
        editor.create_model(PlainOrder)
    return PlainOrder


def load(rows: int, plain) -> tuple:
    from django.db import connection

    from apps.memory.indexes import index_sync
    from apps.memory.models import Column, Row
    from apps.memory.services.tables import table_create

    table = table_create(name="orders", columns=[
        {"name": "sku", "type": "text", "indexed": True},
        {"name": "amount", "type": "number", "indexed": True},
        {"name": "note", "type": "text"}])
    index_sync(table_id=table.id)  # built after commit in the services; make sure here
    keys = {c.name: c.key for c in Column.objects.filter(table=table)}
    rng = random.Random(7)
    amounts = [round(rng.uniform(0, 100_000), 2) for _ in range(rows)]
    Row.objects.bulk_create(
        [Row(table=table, data={keys["sku"]: f"sku-{i}", keys["amount"]: amounts[i],
                                keys["note"]: f"order {i}"}) for i in range(rows)],
        batch_size=5000)
    plain.objects.bulk_create(
        [plain(sku=f"sku-{i}", amount=amounts[i], note=f"order {i}") for i in range(rows)],
        batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return table, amounts


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def stats(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"p50_ms": statistics.median(ordered) * 1000,
            "p95_ms": ordered[int(len(ordered) * 0.95) - 1] * 1000, "n": len(ordered)}


def measure_queries(table, plain, rows: int, n: int) -> dict:
    from apps.memory.models import Column
    from apps.memory.selectors import row_filter

    columns = list(Column.objects.filter(table=table))
    rng = random.Random(11)
    samples: dict[str, list[float]] = {k: [] for k in (
        "eq_memory", "eq_sdk", "eq_plain", "range_memory", "range_sdk", "range_plain")}
    found = {"eq": 0, "range": 0}
    for _ in range(n):
        sku = f"sku-{rng.randrange(rows)}"
        low = round(rng.uniform(0, 99_990), 2)
        for name, took in one_round(table, plain, columns, sku, low).items():
            samples[name].append(took)
        found["eq"] += len(list(row_filter(table=table, where={"sku": sku}, columns=columns)))
        found["range"] += plain.objects.filter(amount__gte=low, amount__lt=low + 5).count()
    result = {k: stats(v) for k, v in samples.items()}
    result["rows_found_per_query"] = {k: v / n for k, v in found.items()}
    for kind in ("eq", "range"):
        for side in ("memory", "sdk"):
            result[f"{kind}_{side}_vs_plain"] = {
                q: result[f"{kind}_{side}"][q] / result[f"{kind}_plain"][q]
                for q in ("p50_ms", "p95_ms")}
    result["plans"] = plans(table, plain, columns)
    return result


def one_round(table, plain, columns, sku: str, low: float) -> dict[str, float]:
    """One query of each kind on each side, evaluated, interleaved."""
    from apps.memory.selectors import row_filter
    from flowops import memory

    where_eq = {"sku": sku}
    where_range = {"amount": {"gte": low, "lt": low + 5}}
    return {
        "eq_memory": timed(lambda: list(
            row_filter(table=table, where=where_eq, columns=columns))),
        "eq_sdk": timed(lambda: memory.query("orders", where=where_eq)),
        "eq_plain": timed(lambda: list(plain.objects.filter(sku=sku))),
        "range_memory": timed(lambda: list(
            row_filter(table=table, where=where_range, columns=columns))),
        "range_sdk": timed(lambda: memory.query("orders", where=where_range)),
        "range_plain": timed(lambda: list(
            plain.objects.filter(amount__gte=low, amount__lt=low + 5))),
    }


def plans(table, plain, columns) -> dict:
    from django.db import connection

    from apps.memory.selectors import row_filter

    def explain(queryset) -> list[str]:
        sql, params = queryset.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN {sql}", params)
            return [r[0] for r in cursor.fetchall()]

    return {
        "eq_memory": explain(row_filter(table=table, where={"sku": "sku-5"}, columns=columns)),
        "eq_plain": explain(plain.objects.filter(sku="sku-5")),
        "range_memory": explain(row_filter(
            table=table, where={"amount": {"gte": 500, "lt": 505}}, columns=columns)),
        "range_plain": explain(plain.objects.filter(amount__gte=500, amount__lt=505)),
    }


def measure_inserts(plain, n: int) -> dict:
    from flowops import memory

    rng = random.Random(3)
    t_sdk = timed(lambda: [memory.store(table="orders", data={
        "sku": f"new-{i}", "amount": round(rng.uniform(0, 1000), 2), "note": "new"})
        for i in range(n)])
    t_plain = timed(lambda: [plain.objects.create(
        sku=f"new-{i}", amount=round(rng.uniform(0, 1000), 2), note="new") for i in range(n)])
    return {"sdk_rows_per_s": n / t_sdk, "plain_rows_per_s": n / t_plain,
            "sdk_ms_per_row": t_sdk / n * 1000, "plain_ms_per_row": t_plain / n * 1000,
            "sdk_vs_plain_time": t_sdk / t_plain}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--inserts", type=int, default=2000)
    args = parser.parse_args()

    fresh_database()
    import django

    django.setup()
    plain = plain_model()
    t0 = time.perf_counter()
    table, _ = load(args.rows, plain)
    t_load = time.perf_counter() - t0
    print(f"loaded {args.rows} rows into each side", flush=True)
    queries = measure_queries(table, plain, args.rows, args.queries)
    inserts = measure_inserts(plain, args.inserts)
    summary = {k: v for k, v in queries.items() if k != "plans"}
    print(json_dump({"queries": summary, "inserts": inserts}))
    for name, lines in queries["plans"].items():
        print(f"{name}:\n  " + "\n  ".join(lines))
    out = {"benchmark": "memory", "machine": machine_info(), "commit": code_version(),
           "rows": args.rows, "queries": queries, "inserts": inserts, "load_s": t_load}
    print(f"saved {save_result('memory', out)}")


def json_dump(data: dict) -> str:
    import json

    return json.dumps(data, indent=2, default=str)


if __name__ == "__main__":
    main()
