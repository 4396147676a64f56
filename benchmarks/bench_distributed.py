"""Benchmark 2: the Celery driver against plain Celery on the same broker and workers.

(a) ``Step.map_over`` of 1000 trivial items vs a plain ``group`` of 1000 no-op tasks (and,
    for reference, a ``chord`` of them with a no-op callback, which is what a map once
    compiled to, and the map with ``chunk_size=1``, an item per message as before chunks):
    throughput in items/s. Target: the map reaches >= 70 % of the group's.
(b) a 100-step pipeline vs a plain ``chain`` of 100 no-ops: time per link. Target <= 1.5x.
(c) beside them: the database's commit latency (median of 1000 tiny INSERT+COMMIT via
    psycopg), and commits per step, counted in separate counting runs both client side
    (every Django connection of the worker processes and of this process) and server side
    (pg_stat_database, transaction ids consumed, pg_stat_user_tables for runs_run).
    Targets: at most two commits per step, no per-step UPDATE of the Run row.

Everything runs against a dedicated database ``flowops_bench`` (created and migrated here)
and Redis database 14, with ``settings.production`` and ``FLOWOPS_DRIVER=celery``; one
``celery -A workers worker --concurrency 2 -I bench_tasks`` serves both sides.

    .venv/bin/python benchmarks/bench_distributed.py [--reps 5] [--variant db-reuse]

``--variant db-reuse`` runs everything with ``bench_settings_reuse`` (production settings
plus ``CELERY_DB_REUSE_MAX``, so workers keep their database connection across tasks).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

# Several checkouts may benchmark on one server: each can name its own database.
DB_NAME = os.environ.get("BENCH_DB_NAME", "flowops_bench")
PG_BENCH = f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}"
ENV = {
    "DJANGO_SETTINGS_MODULE": "settings.production",
    "DJANGO_SECRET_KEY": "x",
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
    "REDIS_URL": "redis://127.0.0.1:6379/14",
    "FLOWOPS_DRIVER": "celery",
}
VARIANTS = {"default": "settings.production", "db-reuse": "bench_settings_reuse"}
if "--variant" in sys.argv:
    ENV["DJANGO_SETTINGS_MODULE"] = VARIANTS[sys.argv[sys.argv.index("--variant") + 1]]
for _k, _v in ENV.items():
    os.environ[_k] = os.environ.get(f"BENCH_{_k}", _v)

from _common import (  # noqa: E402
    ROOT,
    VENV_PY,
    code_version,
    machine_info,
    pg_database_fresh,
    save_result,
    service_versions,
    wait_for_quiet,
    work_dir,
    write_chain_script,
)

MAP_ITEMS = 1000
CHAIN_STEPS = 100


# -- database ------------------------------------------------------------------------------
def ensure_database() -> None:
    pg_database_fresh(DB_NAME)
    subprocess.run([str(VENV_PY), "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                   env=child_env(), check=True)


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "PYTEST_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(BENCH)])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def commit_latency(n: int = 1000) -> dict:
    """Median time of one tiny INSERT + COMMIT on the benchmark database."""
    import psycopg

    with psycopg.connect(PG_BENCH) as con:
        con.execute("CREATE TABLE IF NOT EXISTS bench_commit_latency (id bigserial primary key,"
                    " v int not null)")
        con.execute("TRUNCATE bench_commit_latency")
        con.commit()
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            con.execute("INSERT INTO bench_commit_latency (v) VALUES (%s)", [i])
            con.commit()
            times.append(time.perf_counter() - t0)
        con.execute("DROP TABLE bench_commit_latency")
        con.commit()
    times.sort()
    return {"n": n, "median_ms": statistics.median(times) * 1000,
            "p90_ms": times[int(n * 0.9)] * 1000, "min_ms": times[0] * 1000}


def pg_snapshot() -> dict:
    import psycopg

    with psycopg.connect(PG_BENCH, autocommit=True) as con:
        xact = con.execute("select xact_commit, xact_rollback from pg_stat_database "
                           "where datname = %s", [DB_NAME]).fetchone()
        tables = {r[0]: {"ins": r[1], "upd": r[2], "hot_upd": r[3], "del": r[4]}
                  for r in con.execute("select relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, "
                                       "n_tup_del from pg_stat_user_tables where relname in "
                                       "('runs_run', 'runs_steprun', 'runs_journalentry')")}
        xid = int(con.execute("select pg_current_xact_id()::text").fetchone()[0])
    return {"xact_commit": xact[0], "xact_rollback": xact[1], "xid": xid, "tables": tables}


def pg_delta(before: dict, after: dict) -> dict:
    tables = {}
    for name, cols in after["tables"].items():
        old = before["tables"].get(name, {})
        tables[name] = {k: v - old.get(k, 0) for k, v in cols.items()}
    return {"xact_commit": after["xact_commit"] - before["xact_commit"],
            "xact_rollback": after["xact_rollback"] - before["xact_rollback"],
            # the snapshot itself takes one xid (pg_current_xact_id assigns one)
            "write_transactions": after["xid"] - before["xid"] - 1,
            "tables": tables}


# -- worker --------------------------------------------------------------------------------
class Worker:
    def __init__(self, name: str, concurrency: int = 2, **extra_env: str):
        self.name = name
        self.log_path = work_dir("logs") / f"{name}.log"
        self.concurrency = concurrency
        self.env = child_env(**extra_env)
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [str(ROOT / ".venv" / "bin" / "celery"), "-A", "workers", "worker",
                "--pool", "prefork", "--concurrency", str(self.concurrency), *self.options()]

    def options(self) -> list[str]:
        return ["-l", "warning", "-n", f"{self.name}@%h", "-I", "bench_tasks",
                "--without-gossip", "--without-mingle", "--without-heartbeat"]

    def start(self) -> Worker:
        from workers.celery import app

        log = self.log_path.open("wb")
        self.process = subprocess.Popen(self.command(), cwd=ROOT, env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_path.read_text()[-4000:]}")
            replies = app.control.ping(timeout=0.5)
            if any(self.name in key for reply in replies for key in reply):
                return self
        raise RuntimeError(f"worker not ready:\n{self.log_path.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


# -- measurements ----------------------------------------------------------------------------
def map_script(options: str = "", name: str = "map_sync") -> Path:
    path = work_dir("pipelines") / f"{name}.py"
    path.write_text('"""Benchmark workflow: map_over of a trivial step."""\n'
                    "from flowops import Step, step\n\n\n"
                    "@step\n"
                    "def inc(x: int) -> int:\n"
                    "    return x + 1\n\n\n"
                    f'pipeline = Step.map_over("each", inc{options})\n', encoding="utf-8")
    return path


def run_flowops(script: Path, data, expect) -> dict:
    from django.db import connection

    from apps.runs.models import Run
    from apps.runs.services import runs as run_services
    from apps.workflows.services import workflow_version_from_path

    version, loaded = workflow_version_from_path(script)
    t_create = time.perf_counter()
    run = run_services.run_create(version=version, loaded=loaded, input=data)
    created = time.perf_counter()
    wall0 = time.time()
    t0 = time.perf_counter()
    run_services.run_start(run)
    dispatched = time.perf_counter()
    deadline = t0 + 600
    while True:
        status, finished_at = Run.objects.filter(pk=run.id).values_list(
            "status", "finished_at").get()
        if status in Run.TERMINAL:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"run {run.id} still {status} after 600 s")
        time.sleep(0.01)
    polled = time.perf_counter() - t0
    connection.close()
    run = Run.objects.get(pk=run.id)
    if run.status != Run.Status.SUCCEEDED or run.output != expect:
        raise RuntimeError(f"run {run.id}: {run.status} {run.error} output={run.output!r:.200}")
    # The run's own finish time (database clock, same host) is more precise than polling.
    seconds = finished_at.timestamp() - wall0
    return {"run_id": run.id, "seconds": seconds, "polled_seconds": polled,
            "dispatch_seconds": dispatched - t0, "create_seconds": created - t_create}


def run_group(n: int) -> dict:
    import bench_tasks
    from celery import group

    t0 = time.perf_counter()
    res = group(bench_tasks.noop.si("bench", f"item[{i}]") for i in range(n)).apply_async()
    dispatched = time.perf_counter()
    res.get(timeout=600)
    return {"seconds": time.perf_counter() - t0, "dispatch_seconds": dispatched - t0}


def run_chord(n: int) -> dict:
    import bench_tasks
    from celery import chord, group

    t0 = time.perf_counter()
    res = chord(group(bench_tasks.noop.si("bench", f"item[{i}]") for i in range(n)),
                bench_tasks.callback.si()).apply_async()
    dispatched = time.perf_counter()
    res.get(timeout=600)
    return {"seconds": time.perf_counter() - t0, "dispatch_seconds": dispatched - t0}


def run_chain(n: int) -> dict:
    import bench_tasks
    from celery import chain

    t0 = time.perf_counter()
    res = chain(*[bench_tasks.noop.si("bench", f"step{i}") for i in range(n)]).apply_async()
    dispatched = time.perf_counter()
    res.get(timeout=600)
    return {"seconds": time.perf_counter() - t0, "dispatch_seconds": dispatched - t0}


def counting_run(label: str, script: Path, data, expect, steps: int) -> dict:
    """One run with counting workers: client-side and server-side commits per step."""
    import _dbcount

    count_dir = work_dir("counts", label)
    for old in count_dir.glob("*.json"):
        old.unlink()
    worker = Worker(f"count-{label}", FLOWOPS_BENCH_COUNT_DIR=str(count_dir)).start()
    try:
        from django.db import connection

        connection.close()
        time.sleep(1.5)
        before = pg_snapshot()
        _dbcount.install()
        _dbcount.reset()
        result = run_flowops(script, data, expect)
        orchestrator = _dbcount.snapshot()
    finally:
        worker.stop()
    from django.db import connection

    connection.close()
    time.sleep(1.5)  # backends that exited have flushed their statistics
    after = pg_snapshot()
    workers: dict[str, int] = {}
    for path in count_dir.glob("counts-*.json"):
        for k, v in json.loads(path.read_text()).items():
            workers[k] = workers.get(k, 0) + v
    server = pg_delta(before, after)
    return {
        "steps": steps, "run": result,
        "worker_counts": workers, "orchestrator_counts": orchestrator, "server": server,
        "per_step": {
            "worker_commits": workers.get("commits", 0) / steps,
            "worker_statements": workers.get("statements", 0) / steps,
            "worker_run_row_updates": workers.get("write:UPDATE:runs_run", 0) / steps,
            "all_commits_client": (workers.get("commits", 0)
                                   + orchestrator.get("commits", 0)) / steps,
            "server_write_transactions": server["write_transactions"] / steps,
            "server_xact_commit_incl_readonly": server["xact_commit"] / steps,
            "server_run_row_updates": server["tables"].get("runs_run", {}).get("upd", 0) / steps,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--skip-counting", action="store_true")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="default")
    args = parser.parse_args()

    ensure_database()
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    from _common import django_setup

    django_setup()
    from django.conf import settings

    assert settings.FLOWOPS_DRIVER == "celery", settings.FLOWOPS_DRIVER
    assert settings.DATABASES["default"]["NAME"] == DB_NAME

    info = machine_info()
    info.update(service_versions(PG_BENCH, os.environ["REDIS_URL"]))
    latency = commit_latency()
    print(f"commit latency: median {latency['median_ms']:.3f} ms", flush=True)

    mscript = map_script()
    # Every item in a message of its own, as before chunks: the same engine's reference.
    single_script = map_script(", chunk_size=1", "map_sync_per_item")
    cscript = write_chain_script(CHAIN_STEPS, kind="sync")
    items = list(range(MAP_ITEMS))
    map_expect = [i + 1 for i in items]

    measures = {
        "flowops_map": lambda: run_flowops(mscript, items, map_expect),
        "flowops_map_per_item": lambda: run_flowops(single_script, items, map_expect),
        "celery_group": lambda: run_group(MAP_ITEMS),
        "celery_chord": lambda: run_chord(MAP_ITEMS),
        "flowops_pipeline": lambda: run_flowops(cscript, 0, CHAIN_STEPS),
        "celery_chain": lambda: run_chain(CHAIN_STEPS),
    }
    samples: dict[str, list[dict]] = {k: [] for k in measures}
    worker = Worker("bench").start()
    try:
        for fn in measures.values():  # warm-up: loads versions, connections, imports
            fn()
        for rep in range(args.reps):
            for name, fn in measures.items():
                # Our worker is idle between measurements; its pool processes barely show.
                busy = wait_for_quiet()
                r = fn()
                r["cpu_busy_before"] = round(busy, 3)
                samples[name].append(r)
                print(f"rep {rep + 1} {name:<18} {r['seconds']:8.3f} s "
                      f"(cpu busy before {busy:.0%})", flush=True)
    finally:
        worker.stop()

    med = {k: statistics.median([r["seconds"] for r in v]) for k, v in samples.items()}
    summary = {
        "map_items_per_s": MAP_ITEMS / med["flowops_map"],
        "group_items_per_s": MAP_ITEMS / med["celery_group"],
        "chord_items_per_s": MAP_ITEMS / med["celery_chord"],
        "map_vs_group_throughput": med["celery_group"] / med["flowops_map"],
        "map_vs_chord_throughput": med["celery_chord"] / med["flowops_map"],
        "map_per_item_vs_group_throughput": med["celery_group"] / med["flowops_map_per_item"],
        "pipeline_ms_per_link": med["flowops_pipeline"] / CHAIN_STEPS * 1000,
        "chain_ms_per_link": med["celery_chain"] / CHAIN_STEPS * 1000,
        "pipeline_vs_chain_per_link": med["flowops_pipeline"] / med["celery_chain"],
        "median_seconds": med,
    }
    print(json.dumps(summary, indent=2), flush=True)

    counting = {}
    if not args.skip_counting:
        counting["pipeline"] = counting_run("pipeline", cscript, 0, CHAIN_STEPS, CHAIN_STEPS)
        counting["map"] = counting_run("map", mscript, items, map_expect, MAP_ITEMS)
        print(json.dumps({k: v["per_step"] for k, v in counting.items()}, indent=2))

    commit = code_version()
    out = {"benchmark": "distributed", "variant": args.variant,
           "settings": os.environ["DJANGO_SETTINGS_MODULE"], "machine": info, "commit": commit,
           "commit_latency": latency, "summary": summary, "counting": counting,
           "samples": samples}
    name = "distributed" if args.variant == "default" else f"distributed_{args.variant}"
    print(f"saved {save_result(name, out)}")


if __name__ == "__main__":
    main()
