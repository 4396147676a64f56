"""Benchmark 6: signed Slack events against ``POST /hooks/slack/events`` under gunicorn.

The endpoint runs under gunicorn (the pinned one in the venv; ``--workers`` sync workers,
default 4) on 127.0.0.1:<free port>, with ``settings.production`` on its own PostgreSQL
database (``flowops_bench_slack``, or ``$BENCH_SLACK_DB``; dropped and created afresh,
dropped again at the end) and its own Redis database (``$BENCH_SLACK_REDIS``, default
``redis://127.0.0.1:6379/12``, flushed before and after). The seed's Slack agent
(``examples/slack_support.py``, channel ``#support``) is registered; Slack's Web API is
the fake server of the tests, in this process (the bot's id and the channel names are
asked once per gunicorn worker, during the warm-up).

Runs are **created and dispatched, not executed**: the driver is ``celery`` and no worker
runs, so each accepted event costs what it costs in production up to the broker (the
Event row, the per-workflow message claim, the Run with its budget and first step row,
``run_start``, and after commit the first step's message published to Redis). No script
runs during the measurement.

A load generator in a second process (this file with ``load``) sends signed events
(slack-sdk's ``SignatureVerifier``; distinct ``event_id`` and ``ts``) from N threads, a
new connection per request (gunicorn's sync workers close each one), until ``--count``
events are sent or ``--seconds`` have passed, whichever first. It reports requests per
second and the acknowledgement latency (request sent to answer read) p50/p99.

The baseline, measured in the same run against the same gunicorn right before each event
measurement: signed ``url_verification`` requests to the same endpoint (the signature
check, the JSON parse and an answer; no database, no broker). The events' figures are
also given as ratios to it: what storing the event and starting its run costs on top of
receiving a Slack request at all.

Levels 1, 8 and 16 concurrent senders, interleaved, ``--reps`` times; figures are the
medians over repetitions. After each measurement the database is checked: every event
answered 200 with one run has exactly one Event row and one Run, and nothing else was
stored.

    .venv/bin/python benchmarks/bench_slack_events.py   # --reps 3 --count 1500 --seconds 20
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _common import (  # noqa: E402
    PG_ADMIN,
    ROOT,
    VENV_PY,
    code_version,
    machine_info,
    pg_database_drop,
    pg_database_fresh,
    run_json,
    save_result,
    service_versions,
    wait_for_quiet,
    work_dir,
)

sys.path.insert(0, str(ROOT))  # this tree's code, whatever the venv's editable install says

DB_NAME = os.environ.get("BENCH_SLACK_DB", "flowops_bench_slack")
REDIS_URL = os.environ.get("BENCH_SLACK_REDIS", "redis://127.0.0.1:6379/12")
SECRET = "bench-signing-secret"
PATH = "/hooks/slack/events"
LEVELS = (1, 8, 16)


# -- the load generator (second process) -----------------------------------------------------
def load(url: str, senders: int, count: int, seconds: float, prefix: str, first: int,
         kind: str = "event") -> dict:
    from tests.fakes.slack_server import message_event, signed_headers

    host, port = url.split(":")
    numbers = iter(range(count))
    lock = threading.Lock()
    results: list[tuple[str, int, float, dict]] = []
    deadline = time.monotonic() + seconds

    def next_number() -> int | None:
        with lock:
            return next(numbers, None)

    def send() -> None:
        while time.monotonic() < deadline and (n := next_number()) is not None:
            event_id = f"{prefix}{n:06d}"
            # A distinct ts too: one message starts one run per workflow, whatever its id.
            ts = f"{1_700_000_000 + first + n}.000100"
            body = json.dumps(message_event(f"question {n}?", event_id=event_id, ts=ts)
                              if kind == "event" else
                              {"token": "unused", "challenge": event_id,
                               "type": "url_verification"})
            headers = signed_headers(SECRET, body)
            started = time.perf_counter()
            try:
                status, payload = post(host, int(port), body, headers)
            except OSError as exc:  # counted, not fatal: the check shows what was stored
                status, payload = f"error: {type(exc).__name__}", {}
            took = time.perf_counter() - started
            with lock:
                results.append((event_id, status, took, payload))

    began = time.perf_counter()
    threads = [threading.Thread(target=send) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    latencies = sorted(r[2] for r in results)
    statuses: dict[str, int] = {}
    for _, status, _, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    if kind == "event":
        accepted = [r[0] for r in results if r[1] == 200 and not r[3].get("duplicate")
                    and len(r[3].get("runs", [])) == 1]
    else:
        accepted = [r[0] for r in results if r[1] == 200 and r[3].get("challenge") == r[0]]
    return {"senders": senders, "sent": len(results), "elapsed_s": elapsed,
            "requests_per_s": len(results) / elapsed,
            "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
            "statuses": statuses, "accepted": accepted}


def post(host: str, port: int, body: str, headers: dict[str, str]) -> tuple[int, dict]:
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request("POST", PATH, body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read() or b"{}")
    finally:
        connection.close()


def percentile(ordered: list[float], p: float) -> float:
    """Nearest rank."""
    if not ordered:
        return float("nan")
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# -- the orchestrator --------------------------------------------------------------------------
def environment(slack_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DJANGO_", "FLOWOPS_", "CELERY_", "SLACK_"))}
    env.update({
        "DJANGO_SETTINGS_MODULE": "settings.production", "DJANGO_SECRET_KEY": "bench",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
        "REDIS_URL": REDIS_URL, "FLOWOPS_DRIVER": "celery",
        "SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": "xoxb-fake-token",
        "SLACK_API_URL": slack_url, "PYTHONPATH": str(ROOT),
    })
    return env


def fresh_database() -> None:
    pg_database_fresh(DB_NAME)


def drop_database() -> None:
    pg_database_drop(DB_NAME)


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(env: dict[str, str], port: int, workers: int, log: Path) -> subprocess.Popen:
    command = [str(VENV_PY.parent / "gunicorn"), "settings.wsgi:application",
               "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
               "--worker-class", "sync", "--log-level", "warning"]
    with log.open("ab") as out:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", PATH)
            if connection.getresponse().status == 405:
                return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"gunicorn did not answer in 30 s; see {log}")


_first_ts = 0


def run_load(env: dict[str, str], port: int, senders: int, count: int, seconds: float,
             prefix: str, kind: str = "event") -> dict:
    global _first_ts
    first, _first_ts = _first_ts, _first_ts + count
    return run_json([str(VENV_PY), __file__, "load", f"127.0.0.1:{port}", "--senders",
                     str(senders), "--count", str(count), "--seconds", str(seconds),
                     "--prefix", prefix, "--first", str(first), "--kind", kind], env=env,
                    timeout=seconds + 120)


def check(result: dict, prefix: str) -> dict:
    """Every accepted event is one Event row with one Run; nothing else was stored."""
    from django.db.models import Count

    from apps.runs.models import Run
    from apps.workflows.models import Event

    events = Event.objects.filter(source="slack", key__startswith=prefix)
    runs_per_event = dict(events.annotate(n=Count("runs")).values_list("key", "n"))
    accepted = set(result.pop("accepted"))
    ok = (set(runs_per_event) == accepted
          and all(n == 1 for n in runs_per_event.values())
          and Run.objects.filter(event__in=events).count() == len(accepted))
    return {"accepted": len(accepted), "events": len(runs_per_event),
            "runs": sum(runs_per_event.values()), "exactly_one_run_each": ok}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--count", type=int, default=1500, help="events per measurement")
    parser.add_argument("--seconds", type=float, default=20.0, help="time per measurement")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    args = parser.parse_args()

    from tests.fakes.slack_server import FakeSlackServer

    slack = FakeSlackServer().start()
    env = environment(slack.base_url)
    os.environ.update(env)
    fresh_database()
    flush_redis()
    subprocess.run([str(VENV_PY), "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                   env=env, check=True)
    subprocess.run([str(VENV_PY), "manage.py", "register_workflow",
                    str(ROOT / "examples" / "slack_support.py")], cwd=ROOT, env=env,
                   check=True, capture_output=True)
    import django

    django.setup()
    port = free_port()
    log = work_dir("logs") / "slack_gunicorn.log"
    server = start_gunicorn(env, port, args.workers, log)
    tag = uuid.uuid4().hex[:6]
    samples: dict[int, list[dict]] = {n: [] for n in LEVELS}
    baseline: dict[int, list[dict]] = {n: [] for n in LEVELS}
    try:
        # Warm-up (untimed): every gunicorn worker imports, connects, asks the fake Slack.
        warm = run_load(env, port, 8, 200, 60, f"EvW{tag}")
        print(f"warm-up: {check(warm, f'EvW{tag}')}", file=sys.stderr)
        for rep in range(args.reps):
            for senders in LEVELS:
                wait_for_quiet(max_wait=60)
                base = run_load(env, port, senders, args.count, args.seconds,
                                f"Vr{rep}s{senders}n", kind="challenge")
                base["answered"] = len(base.pop("accepted"))
                baseline[senders].append(base)
                print(f"rep {rep} senders {senders} baseline: {summary(base)}", file=sys.stderr)
                busy = wait_for_quiet(max_wait=60)
                prefix = f"Ev{tag}r{rep}s{senders}n"
                result = run_load(env, port, senders, args.count, args.seconds, prefix)
                result.update(check(result, prefix), cpu_busy_before=busy)
                samples[senders].append(result)
                print(f"rep {rep} senders {senders}: {summary(result)}", file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=30)
        slack.stop()
        from django.db import connections

        connections.close_all()
        flush_redis()
        drop_database()
    report(args, samples, baseline)


def summary(result: dict) -> str:
    return (f"{result['sent']} sent, {result['requests_per_s']:.0f} req/s, "
            f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
            f"statuses {result['statuses']}, one run each: "
            f"{result.get('exactly_one_run_each', '-')}")


def medians(results: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in results)
            for key in ("requests_per_s", "p50_ms", "p99_ms")}


def report(args: argparse.Namespace, samples: dict[int, list[dict]],
           baseline: dict[int, list[dict]]) -> None:
    table = {}
    for senders, results in samples.items():
        table[senders] = {
            "requests_per_s": statistics.median(r["requests_per_s"] for r in results),
            "p50_ms": statistics.median(r["p50_ms"] for r in results),
            "p99_ms": statistics.median(r["p99_ms"] for r in results),
            "sent": sum(r["sent"] for r in results),
            "non_200": sum(n for r in results for s, n in r["statuses"].items() if s != "200"),
            "exactly_one_run_each": all(r["exactly_one_run_each"] for r in results),
            "baseline": medians(baseline[senders]),
        }
    print("| senders | requests/s | p50 ms | p99 ms | baseline req/s | baseline p50 ms | "
          "req/s ÷ baseline | p50 ÷ baseline | events sent | non-200 | one run each |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for senders, row in table.items():
        base = row["baseline"]
        print(f"| {senders} | {row['requests_per_s']:.0f} | {row['p50_ms']:.1f} | "
              f"{row['p99_ms']:.1f} | {base['requests_per_s']:.0f} | {base['p50_ms']:.1f} | "
              f"{row['requests_per_s'] / base['requests_per_s']:.2f} | "
              f"{row['p50_ms'] / base['p50_ms']:.2f} | {row['sent']} | {row['non_200']} | "
              f"{'yes' if row['exactly_one_run_each'] else 'NO'} |")
    path = save_result("slack_events", {
        "machine": machine_info(), "code": code_version(),
        "services": service_versions(PG_ADMIN, REDIS_URL), "args": vars(args),
        "table": table, "samples": samples, "baseline": baseline})
    print(f"raw: {path}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        parser = argparse.ArgumentParser()
        parser.add_argument("mode")
        parser.add_argument("url")
        parser.add_argument("--senders", type=int, required=True)
        parser.add_argument("--count", type=int, required=True)
        parser.add_argument("--seconds", type=float, required=True)
        parser.add_argument("--prefix", required=True)
        parser.add_argument("--first", type=int, required=True)
        parser.add_argument("--kind", choices=["event", "challenge"], default="event")
        a = parser.parse_args()
        print(json.dumps(load(a.url, a.senders, a.count, a.seconds, a.prefix, a.first,
                              a.kind)))
    else:
        main()
