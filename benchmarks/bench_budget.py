"""Benchmark 4: what the budget ledger costs per model call, and the pre-check per step.

Per model call the engine reserves the call's worst case (``budget.reserve``: the
conditional UPDATE of the run's RunBudget row and the Reservation row, one statement on
PostgreSQL, its own commit), makes the call, then settles it (``budget.settle``: one
statement on PostgreSQL) inside the transaction that journals the call's result. Before a
step starts, its claim checks the budget in the same statement (``steps_sql.claim``); when
that fast claim does not apply (a run's first step in a process, a join) the worker reads
the run and its budget with ``steps_sql.read_head``: that read is what is timed here as
the pre-check. This script times the real functions on a real run, created by
``run_create`` with a budget, in two places:

* one process, one run, ``--calls`` cycles of: pre-check, reserve, a fake model call
  (``time.sleep``, ``--call-ms``, default 200 ms, itself timed: the baseline), settle in a
  transaction; then the same cycles back to back, without the call; on PostgreSQL
  (``settings.production``, a dedicated database ``flowops_bench_budget``) and SQLite
  (``settings.local``, a fresh file per repetition);
* contended: ``--procs`` processes (default 8) reserving and settling on the same run's
  ledger at once, each in its own branch of a ``Step.parallel``, on PostgreSQL, with the
  fake call and back to back; and, as the control, the same processes back to back each
  on a run of its own (the same load on the machine, no shared ledger row).

The settle is timed inside a transaction that has already run the journal's fence UPDATE,
as in the engine, where the call's journal entry opens the transaction that settles it;
the settle's commit is timed apart: in the engine it is the commit of the journal write,
which happens with or without a budget. "ledger" = reserve (with its commit) + settle's
statements: what the ledger adds to a call. "ledger + commit" adds settle's commit: the
upper bound. Target: ledger under 1 % of a 200 ms call.

The run is put in state ``running`` with one UPDATE, as the ledger tests do, rather than
started: started, the embedded driver would execute it. After every measurement the
ledger must balance (nothing reserved, spent = the sum of the settled calls), or the
script stops.

    .venv/bin/python benchmarks/bench_budget.py [--reps 3] [--calls 500] [--call-ms 200]
                                               [--procs 8] [--contended-calls 100]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _common import (  # noqa: E402
    PG_ADMIN,
    ROOT,
    VENV_PY,
    code_version,
    django_setup,
    fresh_sqlite,
    local_env,
    machine_info,
    pg_database_fresh,
    run_json,
    save_result,
    wait_for_quiet,
    work_dir,
)

DB_NAME = os.environ.get("BENCH_BUDGET_DB", "flowops_bench_budget")
PG_ENV = {
    "DJANGO_SETTINGS_MODULE": "settings.production",
    "DJANGO_SECRET_KEY": "x",
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
    "REDIS_URL": "redis://127.0.0.1:6379/14",  # required by the settings, never connected
    "FLOWOPS_DRIVER": "celery",
}
BRANCHES = 16  # the workflow's parallel branches: at most this many contending processes
MODEL = "openai:gpt-4o-mini"
# A call with ~1000 prompt tokens and a 200-token cap; it used less than its worst case.
WORST = (Decimal("0.00027750"), 1250)
ACTUAL = (Decimal("0.00021000"), 1100)
USAGE = {"prompt": 1000, "completion": 100, "cached": 0}
WARMUP = 20


# -- the orchestrator ----------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--calls", type=int, default=500, help="cycles per measurement")
    parser.add_argument("--call-ms", type=float, default=200.0, help="the fake model call")
    parser.add_argument("--procs", type=int, default=8, help="contending processes")
    parser.add_argument("--contended-calls", type=int, default=100,
                        help="cycles per contending process")
    args = parser.parse_args()
    if not 1 <= args.procs <= BRANCHES:
        parser.error(f"--procs must be 1..{BRANCHES}")
    if args.call_ms <= 0:
        parser.error("--call-ms must be above 0 (it is the baseline)")

    script = write_script()
    ensure_database()
    pg_env = child_env(PG_ENV)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    meta = {"machine": machine_info(), "code": code_version(), "postgresql": pg_settings(),
            "args": vars(args), "started": started}
    print(f"{meta['machine']['cpu']}, {meta['machine']['cores']} cores; PostgreSQL "
          f"{meta['postgresql'].get('server_version')}; code {meta['code']['commit']}",
          flush=True)
    reps: list[dict[str, Any]] = []
    for rep in range(args.reps):
        row: dict[str, Any] = {}
        # Configurations interleaved within each repetition.
        for db in ("postgresql", "sqlite"):
            env = pg_env if db == "postgresql" else child_env(
                local_env(fresh_sqlite(f"budget_{rep}")))
            row[db] = run_json([str(VENV_PY), __file__, "measure", "--script", str(script),
                                "--calls", str(args.calls), "--call-ms", str(args.call_ms)],
                               env=env)
            _print_single(rep, db, row[db])
        for name, call_ms, shared in (("contended_call", args.call_ms, True),
                                      ("contended_back_to_back", 0.0, True),
                                      ("separate_back_to_back", 0.0, False)):
            row[name] = contend(script, pg_env, procs=args.procs, calls=args.contended_calls,
                                call_ms=call_ms, shared=shared, name=f"{name}_{rep}")
            _print_contended(rep, name, row[name])
        reps.append(row)
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    summary = summarize(reps)
    path = save_result("budget", {**meta, "summary": summary, "reps": reps})
    print(json.dumps(summary, indent=2))
    print(f"raw results: {path}")


def write_script() -> Path:
    """A workflow of BRANCHES parallel branches, each one step (its own StepRun row)."""
    path = work_dir("pipelines") / "budget_parallel.py"
    path.write_text("\n".join([
        '"""Benchmark workflow (generated by benchmarks/bench_budget.py)."""',
        "from flowops import Step, step",
        "",
        "",
        "@step",
        "def ask(x: int) -> int:",
        "    return x",
        "",
        "",
        f"pipeline = Step.parallel('fan', {{f'b{{i}}': ask for i in range({BRANCHES})}})",
        "",
    ]), encoding="utf-8")
    return path


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DJANGO_", "FLOWOPS_", "DATABASE_", "CELERY_", "PYTEST_"))}
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(BENCH)])
    return env


def ensure_database() -> None:
    pg_database_fresh(DB_NAME)
    subprocess.run([str(VENV_PY), "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                   env=child_env(PG_ENV), check=True)


def pg_settings() -> dict[str, str]:
    import psycopg

    names = ["server_version", "fsync", "synchronous_commit", "wal_sync_method",
             "shared_buffers"]
    with psycopg.connect(PG_ADMIN, autocommit=True) as con:
        return {n: con.execute(f"SHOW {n}").fetchone()[0] for n in names}


def contend(script: Path, env: dict[str, str], *, procs: int, calls: int, call_ms: float,
            shared: bool, name: str) -> dict[str, Any]:
    """``procs`` processes started together, on one run's ledger (``shared``) or each on a
    run of its own (the control: the same load without a shared row); ledgers checked."""
    runs = 1 if shared else procs
    setup = run_json([str(VENV_PY), __file__, "setup", "--script", str(script),
                      "--runs", str(runs)], env=env)
    # Shared: one run, each process in its own branch. Separate: run i, first branch.
    places = [(setup["runs"][0]["run_id"], setup["runs"][0]["step_keys"][i]) if shared
              else (setup["runs"][i]["run_id"], setup["runs"][i]["step_keys"][0])
              for i in range(procs)]
    gate = work_dir("gates") / name
    gate.mkdir(parents=True, exist_ok=True)
    for old in gate.iterdir():
        old.unlink()
    children = [subprocess.Popen(
        [str(VENV_PY), __file__, "contend", "--run-id", places[i][0], "--step-key",
         places[i][1], "--calls", str(calls), "--call-ms", str(call_ms),
         "--gate", str(gate), "--index", str(i)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(procs)]
    deadline = time.monotonic() + 300
    while len(list(gate.glob("ready-*"))) < procs:
        if time.monotonic() > deadline or any(c.poll() is not None for c in children):
            for c in children:
                c.kill()
            raise RuntimeError("contending processes did not get ready: "
                               + " | ".join((c.communicate()[1] or "")[-2000:] for c in children))
        time.sleep(0.05)
    busy = wait_for_quiet()
    (gate / "go").touch()
    results = []
    for c in children:
        out, err = c.communicate(timeout=1800)
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if c.returncode != 0 or not lines:
            raise RuntimeError(f"a contending process exited {c.returncode}:\n{err[-4000:]}")
        results.append(json.loads(lines[-1]))
    check = [run_json([str(VENV_PY), __file__, "check", "--run-id", r["run_id"],
                       "--settled", str(procs // runs * (calls + WARMUP))], env=env)
             for r in setup["runs"]]
    merged = {key: [v for r in results for v in r["samples"][key]]
              for key in results[0]["samples"]}
    wall = max(r["t_end"] for r in results) - min(r["t_start"] for r in results)
    return {"procs": procs, "calls_per_proc": calls, "call_ms": call_ms, "shared": shared,
            "cpu_busy_before": busy, "wall_s": wall,
            "calls_per_s": procs * calls / wall if wall else None,
            "ledger_check": check, "samples": merged}


# -- statistics ----------------------------------------------------------------------------
def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def stats_of(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """p50 / p95 in milliseconds of each timed part, and of the derived totals."""
    parts = dict(samples)
    parts["ledger"] = [r + s for r, s in zip(samples["reserve"], samples["settle"],
                                             strict=True)]
    parts["ledger_with_commit"] = [r + s + c for r, s, c in zip(
        samples["reserve"], samples["settle"], samples["settle_commit"], strict=True)]
    return {name: {"p50_ms": pct(v, 50) * 1000, "p95_ms": pct(v, 95) * 1000}
            for name, v in parts.items()}


def summarize(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Per configuration and timed part: the median over repetitions of p50 and of p95."""
    out: dict[str, Any] = {}
    for config in reps[0]:
        loops = ("call", "back_to_back") if config in ("postgresql", "sqlite") else (None,)
        for loop in loops:
            name = f"{config}_{loop}" if loop else config
            per_rep = [stats_of(r[config]["samples"][loop] if loop else r[config]["samples"])
                       for r in reps]
            out[name] = {part: {k: statistics.median(s[part][k] for s in per_rep)
                                for k in ("p50_ms", "p95_ms")} for part in per_rep[0]}
    for name, stats in out.items():
        # The baseline: the fake call as timed in the same repetitions, in the loops with
        # the call (a back-to-back loop is compared with its configuration's call loop).
        with_call = "contended_call" if name.startswith("separate") else name.replace(
            "back_to_back", "call")
        call = out[with_call]["call"]["p50_ms"]
        stats["baseline_call_p50_ms"] = call
        stats["ledger_pct_of_call"] = {k: 100 * v / call for k, v in stats["ledger"].items()}
        stats["ledger_with_commit_pct_of_call"] = {
            k: 100 * v / call for k, v in stats["ledger_with_commit"].items()}
        stats["precheck_pct_of_call"] = {k: 100 * v / call
                                         for k, v in stats["precheck"].items()}
    for config in reps[0]:
        if config.startswith(("contended", "separate")):
            out[config]["calls_per_s"] = statistics.median(r[config]["calls_per_s"]
                                                           for r in reps)
    return out


def _print_single(rep: int, db: str, result: dict[str, Any]) -> None:
    for loop in ("call", "back_to_back"):
        s = stats_of(result["samples"][loop])
        print(f"rep {rep} {db:<10} {loop:<12} ledger p50 {s['ledger']['p50_ms']:.3f} ms "
              f"p95 {s['ledger']['p95_ms']:.3f} ms (reserve {s['reserve']['p50_ms']:.3f}, "
              f"settle {s['settle']['p50_ms']:.3f} + commit "
              f"{s['settle_commit']['p50_ms']:.3f}); pre-check p50 "
              f"{s['precheck']['p50_ms']:.3f} p95 {s['precheck']['p95_ms']:.3f} ms; "
              f"call p50 {s['call']['p50_ms']:.1f} ms; idle before: "
              f"{1 - result['cpu_busy_before']:.0%}", flush=True)


def _print_contended(rep: int, name: str, result: dict[str, Any]) -> None:
    s = stats_of(result["samples"])
    print(f"rep {rep} {name:<23} ledger p50 {s['ledger']['p50_ms']:.3f} ms p95 "
          f"{s['ledger']['p95_ms']:.3f} ms (reserve p95 {s['reserve']['p95_ms']:.3f}); "
          f"{result['calls_per_s']:.0f} calls/s; ledgers balance: "
          f"{all(c['ok'] for c in result['ledger_check'])}",
          flush=True)


# -- the measuring children ----------------------------------------------------------------
def new_running_run(script: str):
    from apps.runs.models import Run, StepRun
    from apps.runs.services.runs import run_create
    from apps.workflows.services import workflow_version_from_path
    from flowops.usage import UsageLimits

    version, loaded = workflow_version_from_path(script)
    # Limits that the benchmark never reaches, so that every reservation is granted.
    run = run_create(version=version, loaded=loaded, input=1,
                     limits=UsageLimits(total_cost_usd_limit=Decimal(100_000),
                                        total_tokens_limit=10**12))
    Run.objects.filter(id=run.id).update(status=Run.Status.RUNNING)
    steps = dict(StepRun.objects.filter(run=run, kind="step").values_list("key", "id"))
    return run, steps


class Cycle:
    """Pre-check, reserve, the fake call, settle: one model call in one step."""

    def __init__(self, run_id: str, step_key: str, step_id: int, call_s: float):
        from apps.runs.services import budget, steps_sql

        self.budget = budget
        self.steps_sql = steps_sql
        self.run_id, self.step_key, self.step_id, self.call_s = (
            run_id, step_key, step_id, call_s)
        self.worst = budget.Cost(*WORST)
        self.actual = budget.Cost(*ACTUAL)
        self.n = 0

    def once(self, samples: dict[str, list[float]] | None) -> None:
        from django.db import transaction
        from django.db.models.functions import Now

        from apps.runs.models import StepRun

        clock = time.perf_counter
        self.n += 1
        t0 = clock()
        if self.steps_sql.read_head(self.run_id).budget_spent:
            raise RuntimeError("the benchmark run's budget is exhausted")
        t1 = clock()
        held = self.budget.reserve(run_id=self.run_id, step_key=self.step_key, attempt=1,
                                   call=f"ai.generate#{self.n}", model=MODEL, worst=self.worst)
        t2 = clock()
        if self.call_s:
            time.sleep(self.call_s)
        with transaction.atomic():
            # What the journal writes first in this transaction (its fence), untimed:
            # the transaction and its first round trip after the call are the journal's.
            StepRun.objects.filter(id=self.step_id).update(heartbeat_at=Now())
            t3 = clock()
            ok = self.budget.settle(reservation=held, actual=self.actual, usage=USAGE,
                                    step_id=self.step_id)
            t4 = clock()
        t5 = clock()
        if not ok:
            raise RuntimeError("an overrun: the benchmark's actual cost is above its worst")
        if samples is not None:
            for key, value in (("precheck", t1 - t0), ("reserve", t2 - t1),
                               ("call", t3 - t2), ("settle", t4 - t3),
                               ("settle_commit", t5 - t4)):
                samples[key].append(value)


def _empty() -> dict[str, list[float]]:
    return {k: [] for k in ("precheck", "reserve", "call", "settle", "settle_commit")}


def ledger_check(run_id: str, settled: int) -> dict[str, Any]:
    """The ledger balances: nothing held, spent = the settled calls, all of them settled."""
    from django.db.models import Count, Sum

    from apps.runs.models import Reservation, RunBudget

    budget = RunBudget.objects.get(run_id=run_id)
    calls = Reservation.objects.filter(run_id=run_id).aggregate(
        n=Count("id"), usd=Sum("settled_usd"), tokens=Sum("settled_tokens"))
    states = set(Reservation.objects.filter(run_id=run_id).values_list("state", flat=True))
    # On SQLite the decimal columns hold floats (NUMERIC affinity), so a SUM over them
    # drifts below the ledger's 8 decimals: compare at the ledger's precision.
    summed = Decimal(calls["usd"]).quantize(Decimal("0.00000001"))
    ok = (budget.reserved_usd == 0 and budget.reserved_tokens == 0 and calls["n"] == settled
          and states == {"settled"} and budget.spent_usd == settled * ACTUAL[0]
          and budget.spent_usd == summed and budget.spent_tokens == calls["tokens"])
    result = {"ok": ok, "calls": calls["n"], "spent_usd": str(budget.spent_usd),
              "spent_tokens": budget.spent_tokens, "reserved_usd": str(budget.reserved_usd)}
    if not ok:
        raise SystemExit(f"the ledger does not balance: {result}")
    return result


def cmd_measure(args) -> dict[str, Any]:
    django_setup()
    run, steps = new_running_run(args.script)
    key = sorted(steps)[0]
    samples = {}
    busy = {}
    for loop, call_s in (("call", args.call_ms / 1000), ("back_to_back", 0.0)):
        cycle = Cycle(run.id, key, steps[key], call_s)
        for _ in range(WARMUP):  # first-query costs, prepared plans, caches
            cycle.once(None)
        busy[loop] = wait_for_quiet()
        samples[loop] = _empty()
        for _ in range(args.calls):
            cycle.once(samples[loop])
    check = ledger_check(run.id, 2 * (WARMUP + args.calls))
    from django.db import connection

    return {"vendor": connection.vendor, "cpu_busy_before": max(busy.values()),
            "cpu_busy_before_each": busy, "ledger_check": check, "samples": samples}


def cmd_setup(args) -> dict[str, Any]:
    django_setup()
    runs = [new_running_run(args.script) for _ in range(args.runs)]
    return {"runs": [{"run_id": run.id, "step_keys": sorted(steps)} for run, steps in runs]}


def cmd_contend(args) -> dict[str, Any]:
    django_setup()
    from apps.runs.models import StepRun

    step_id = StepRun.objects.get(run_id=args.run_id, key=args.step_key).id
    cycle = Cycle(args.run_id, args.step_key, step_id, args.call_ms / 1000)
    for _ in range(WARMUP):
        cycle.once(None)
    gate = Path(args.gate)
    (gate / f"ready-{args.index}").touch()
    while not (gate / "go").exists():
        time.sleep(0.005)
    samples = _empty()
    t_start = time.time()
    for _ in range(args.calls):
        cycle.once(samples)
    return {"t_start": t_start, "t_end": time.time(), "samples": samples}


def cmd_check(args) -> dict[str, Any]:
    django_setup()
    return ledger_check(args.run_id, args.settled)


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("measure")
    p.add_argument("--script", required=True)
    p.add_argument("--calls", type=int, required=True)
    p.add_argument("--call-ms", type=float, required=True)
    p = sub.add_parser("setup")
    p.add_argument("--script", required=True)
    p.add_argument("--runs", type=int, default=1)
    p = sub.add_parser("contend")
    for name in ("--run-id", "--step-key", "--gate"):
        p.add_argument(name, required=True)
    p.add_argument("--calls", type=int, required=True)
    p.add_argument("--call-ms", type=float, required=True)
    p.add_argument("--index", type=int, required=True)
    p = sub.add_parser("check")
    p.add_argument("--run-id", required=True)
    p.add_argument("--settled", type=int, required=True)
    args = parser.parse_args(argv)
    handler = {"measure": cmd_measure, "setup": cmd_setup, "contend": cmd_contend,
               "check": cmd_check}[args.cmd]
    print(json.dumps(handler(args)))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("measure", "setup", "contend", "check"):
        child_main(sys.argv[1:])
    else:
        main()
