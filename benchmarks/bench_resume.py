"""Benchmark 3: resuming a 1000-step run that failed at its last step (embedded, SQLite).

The last step (``fail_once``) raises the first time (a flag file is missing, and it creates
it), so the first run fails at step 1000 with 999 checkpoints. A second, fresh process
then times ``run_resume`` (what ``runflow --run-id`` and ``resume RUN_ID`` call): the
resume must re-execute exactly one step. The baseline, in the same repetition, is the
first run itself (1000 steps, the last one failing).

The resuming process has loaded the workflow version and imported the driver before the
clock starts ("warm"); each repetition also times a "cold" resume of a second failed run,
whose process imports Celery and the redis client lazily inside the timed region, as a
``runflow --run-id`` process does.

    .venv/bin/python benchmarks/bench_resume.py [--reps 5] [--steps 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BENCH_DIR,
    VENV_PY,
    code_version,
    fresh_sqlite,
    local_env,
    machine_info,
    median,
    run_json,
    save_result,
    wait_for_quiet,
    work_dir,
    write_chain_script,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--kind", choices=["async", "sync"], default="async")
    args = parser.parse_args()

    flag = work_dir("flags") / "fail_once.flag"
    script = write_chain_script(args.steps, kind=args.kind, fail_last_flag=flag)
    side = str(BENCH_DIR / "flowops_side.py")
    samples = []
    for rep in range(args.reps + 1):  # the first repetition also counts statements
        counting = rep == 0
        row = {}
        for cold in (False, True):
            if counting and cold:
                continue
            flag.unlink(missing_ok=True)
            env = local_env(fresh_sqlite(f"resume_{rep}_{'cold' if cold else 'warm'}"))
            busy = wait_for_quiet()
            failed = run_json([str(VENV_PY), side, "fail", "--script", str(script),
                               "--steps", str(args.steps)], env=env)
            if not failed["ok"]:
                raise SystemExit(f"the first run did not fail at its last step: {failed}")
            resumed = run_json([str(VENV_PY), side, "resume", "--script", str(script),
                                "--run-id", failed["run_id"],
                                *(["--count"] if counting else []),
                                *(["--cold"] if cold else [])], env=env)
            if not resumed["ok"] or resumed["output"] != args.steps:
                raise SystemExit(f"resume did not finish the run: {resumed}")
            label = "counting" if counting else f"rep {rep} {'cold' if cold else 'warm'}"
            print(f"{label:>12}: first run {failed['first_run_seconds']:.3f} s, resume "
                  f"{resumed['resume_seconds'] * 1000:.1f} ms, steps claimed again "
                  f"{resumed['steps_claimed_again']} {resumed['keys_claimed_again']}, step "
                  f"functions called {resumed['function_calls_in_resume']}", flush=True)
            if counting:
                counts = resumed["counts"]
            elif cold:
                row["cold_resume_seconds"] = resumed["resume_seconds"]
                row["cold_steps_claimed_again"] = resumed["steps_claimed_again"]
            else:
                row.update({"first_run_seconds": failed["first_run_seconds"],
                            "first_run_calls": failed["calls"],
                            "cpu_busy_before": round(busy, 3), **resumed})
        if not counting:
            samples.append(row)

    first = median([s["first_run_seconds"] for s in samples])
    resume = median([s["resume_seconds"] for s in samples])
    summary = {
        "steps": args.steps, "reps": len(samples),
        "median_resume_ms": resume * 1000,
        "median_cold_resume_ms": median([s["cold_resume_seconds"] for s in samples]) * 1000,
        "median_first_run_seconds": first,
        "first_run_ms_per_step": first / args.steps * 1000,
        "resume_over_first_run": resume / first,
        "resume_in_steps_of_first_run": resume / (first / args.steps),
        "steps_claimed_again": sorted({s["steps_claimed_again"] for s in samples}
                                      | {s["cold_steps_claimed_again"] for s in samples}),
        "step_functions_called_in_resume": sorted(
            {s["function_calls_in_resume"] for s in samples}),
        "resume_counts": counts,
    }
    commit = code_version()
    path = save_result("resume", {"benchmark": "resume", "machine": machine_info(),
                                  "commit": commit, "summary": summary, "samples": samples})
    print(json.dumps(summary, indent=2))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
