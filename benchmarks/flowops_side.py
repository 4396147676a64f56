"""FlowOps side of the embedded benchmarks: one measurement per invocation, JSON on stdout.

Runs under the project's .venv with ``settings.local`` (the orchestrators set
``DJANGO_SETTINGS_MODULE`` and ``FLOWOPS_DB_PATH``). Django setup, migrations and loading
the workflow script happen before the clock starts.

    chain   --script S --steps N [--count] [--profile OUT.prof]
            time run_create + run_start (the embedded driver runs the whole run)
    fail    --script S --steps N
            run a fail-once pipeline until it fails at its last step; print the run id
    resume  --script S --run-id ID [--count]
            time run_resume of that run (as ``runflow --run-id`` would) in a fresh process
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import django_setup  # noqa: E402


def _load(script: str):
    from apps.workflows.services import workflow_version_from_path

    return workflow_version_from_path(script)


def _calls(loaded) -> dict:
    module = loaded.module
    return dict(getattr(module, "CALLS", {})) if module is not None else {}


def cmd_chain(args) -> dict:
    from django.db import connection

    from apps.runs.models import Run, StepRun
    from apps.runs.services import runs as run_services

    if args.warmup_script:
        # One short run first: lazy imports, Celery's app finalisation and first-query
        # costs are paid once per process, not per step.
        w_version, w_loaded = _load(args.warmup_script)
        w_run = run_services.run_create(version=w_version, loaded=w_loaded, input=0)
        run_services.run_start(w_run)
        assert Run.objects.get(pk=w_run.id).status == Run.Status.SUCCEEDED
    version, loaded = _load(args.script)
    if args.count:
        import _dbcount

        _dbcount.install()
        _dbcount.reset()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    connection.ensure_connection()

    started = time.perf_counter()
    if profiler:
        profiler.enable()
    run = run_services.run_create(version=version, loaded=loaded, input=0)
    created = time.perf_counter()
    run_services.run_start(run)
    finished = time.perf_counter()
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)

    counts = None
    if args.count:
        import _dbcount

        counts = _dbcount.snapshot()
    run = Run.objects.get(pk=run.id)
    n_rows = StepRun.objects.filter(run_id=run.id).count()
    ok = run.status == Run.Status.SUCCEEDED and run.output == args.steps
    return {"engine": "flowops", "driver": "embedded", "steps": args.steps,
            "seconds": finished - started, "create_seconds": created - started,
            "drive_seconds": finished - created,
            "per_step_ms": (finished - started) / args.steps * 1000, "ok": ok,
            "status": run.status, "output": run.output, "rows": n_rows,
            "calls": _calls(loaded), "counts": counts}


def cmd_fail(args) -> dict:
    from apps.runs.models import Run
    from apps.runs.services import runs as run_services

    version, loaded = _load(args.script)
    run = run_services.run_create(version=version, loaded=loaded, input=0)
    started = time.perf_counter()
    run_services.run_start(run)
    elapsed = time.perf_counter() - started
    run = Run.objects.get(pk=run.id)
    return {"run_id": run.id, "status": run.status, "error": run.error,
            "first_run_seconds": elapsed, "calls": _calls(loaded),
            "ok": run.status == Run.Status.FAILED
            and (run.error or {}).get("step_key", "").startswith("fail_once")}


def cmd_resume(args) -> dict:
    from django.db import connection
    from django.db.models import Sum

    from apps.runs.models import Run, StepRun
    from apps.runs.services import runs as run_services
    from apps.runs.services.execution import loaded_for

    version, loaded = _load(args.script)
    before = dict(StepRun.objects.filter(run_id=args.run_id).values_list("key", "attempt"))
    # Warm what a resuming process loads anyway before it runs (version, connection).
    loaded_for(Run.objects.get(pk=args.run_id))
    connection.ensure_connection()
    if not args.cold:
        # The driver's lazy imports (workers, Celery, the result backend's redis client),
        # paid once per process: ~0.2 s, measured separately with --cold.
        from workers import embedded, executor  # noqa: F401

        executor.step_task.backend  # noqa: B018
    if args.count:
        import _dbcount

        _dbcount.install()
        _dbcount.reset()

    started = time.perf_counter()
    run_services.run_resume(run_id=args.run_id)
    elapsed = time.perf_counter() - started

    counts = None
    if args.count:
        import _dbcount

        counts = _dbcount.snapshot()
    after = dict(StepRun.objects.filter(run_id=args.run_id).values_list("key", "attempt"))
    reclaimed = sorted(k for k, a in after.items() if a != before.get(k))
    run = Run.objects.get(pk=args.run_id)
    total_attempts = StepRun.objects.filter(run_id=args.run_id).aggregate(s=Sum("attempt"))["s"]
    calls = _calls(loaded)
    return {"run_id": args.run_id, "status": run.status, "cold": args.cold, "output": run.output,
            "resume_seconds": elapsed, "steps_claimed_again": len(reclaimed),
            "keys_claimed_again": reclaimed[:10],
            "function_calls_in_resume": sum(calls.values()), "calls": calls,
            "total_attempts": total_attempts, "counts": counts,
            "ok": run.status == Run.Status.SUCCEEDED}


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("chain")
    p.add_argument("--script", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--count", action="store_true")
    p.add_argument("--profile")
    p.add_argument("--warmup-script", help="run this (short) workflow once before timing")
    p = sub.add_parser("fail")
    p.add_argument("--script", required=True)
    p.add_argument("--steps", type=int, required=True)
    p = sub.add_parser("resume")
    p.add_argument("--script", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--count", action="store_true")
    p.add_argument("--cold", action="store_true",
                   help="do not import the driver (workers, Celery) before timing")
    args = parser.parse_args()

    django_setup()
    result = {"chain": cmd_chain, "fail": cmd_fail, "resume": cmd_resume}[args.cmd](args)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
