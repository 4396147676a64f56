"""Benchmark 1: embedded per-step overhead, FlowOps vs Flujo 0.6.11, in one invocation.

A pipeline of N trivial steps (``async def inc(x: int) -> int: return x + 1``), N = 100 and
1000, run by:

* FlowOps' embedded driver on SQLite (``settings.local``, a fresh migrated database per
  measurement in benchmarks/.work/sqlite), checkpointing every step;
* Flujo 0.6.11 (its own venv, Python 3.13) with ``SQLiteBackend`` (durable), and with
  ``persist_state=False`` (no persistence).

Each measurement is its own subprocess that times only the run (after imports,
migrations and one 5-step warm-up run in the same process) and prints JSON. The
configurations are interleaved round-robin, repeated ``--reps`` times; medians are
reported, and ratios are taken between medians of this same invocation.

    .venv/bin/python benchmarks/bench_embedded.py [--reps 5] [--slow-reps 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BENCH_DIR,
    FLUJO_PY,
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


def flowops_cmd(steps: int, kind: str, extra: list[str] | None = None) -> tuple[list, dict]:
    script = write_chain_script(steps, kind=kind)
    warm = write_chain_script(5, kind=kind)
    db = fresh_sqlite(f"embedded_{steps}_{kind}")
    cmd = [str(VENV_PY), str(BENCH_DIR / "flowops_side.py"), "chain", "--script", str(script),
           "--steps", str(steps), "--warmup-script", str(warm), *(extra or [])]
    return cmd, local_env(db)


def flujo_cmd(steps: int, mode: str) -> list[str]:
    db = work_dir("flujo-state") / f"flujo_{steps}_{mode}.db"
    return [str(FLUJO_PY), str(BENCH_DIR / "flujo_side.py"), "--steps", str(steps),
            "--mode", mode, "--db", str(db)]


def measure(config: dict) -> dict:
    if config["engine"] == "flowops":
        cmd, env = flowops_cmd(config["steps"], config["kind"])
        return run_json(cmd, env=env)
    # Flujo writes flujo.lock into its working directory: keep it out of the repository.
    return run_json(flujo_cmd(config["steps"], config["mode"]), cwd=work_dir("flujo-cwd"),
                    timeout=3600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--slow-reps", type=int, default=3,
                        help="repetitions of durable Flujo at 1000 steps (minutes each)")
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--skip-flujo", action="store_true")
    parser.add_argument("--count", action="store_true",
                        help="also one counting run per FlowOps config (statements, commits)")
    args = parser.parse_args()

    if not args.skip_flujo and not FLUJO_PY.exists():
        sys.exit(f"no Flujo venv at {FLUJO_PY}: see benchmarks/README.md")

    configs = []
    for n in args.steps:
        configs.append({"name": f"flowops_async_{n}", "engine": "flowops", "steps": n,
                        "kind": "async"})
        configs.append({"name": f"flowops_sync_{n}", "engine": "flowops", "steps": n,
                        "kind": "sync"})
        if not args.skip_flujo:
            configs.append({"name": f"flujo_memory_{n}", "engine": "flujo", "steps": n,
                            "mode": "memory"})
            configs.append({"name": f"flujo_sqlite_{n}", "engine": "flujo", "steps": n,
                            "mode": "sqlite"})

    def reps_for(c: dict) -> int:
        slow = c["engine"] == "flujo" and c.get("mode") == "sqlite" and c["steps"] >= 1000
        return args.slow_reps if slow else args.reps

    samples: dict[str, list[dict]] = {c["name"]: [] for c in configs}
    code_at_start = code_version()  # others commit to this checkout while it runs
    for rep in range(max(args.reps, args.slow_reps)):
        for c in configs:
            if rep >= reps_for(c):
                continue
            busy = wait_for_quiet()
            t0 = time.monotonic()
            result = measure(c)
            result["cpu_busy_before"] = round(busy, 3)
            if not result.get("ok"):
                raise SystemExit(f"{c['name']}: run did not succeed: {result}")
            samples[c["name"]].append(result)
            save_result("embedded.partial", {"code_at_start": code_at_start,
                                             "samples": samples})
            print(f"rep {rep + 1} {c['name']:<22} {result['seconds']:9.3f} s  "
                  f"{result['per_step_ms']:8.3f} ms/step  (wall {time.monotonic() - t0:.1f} s, "
                  f"cpu busy before {busy:.0%})",
                  flush=True)

    counts = {}
    if args.count:
        for n in args.steps:
            for kind in ("async", "sync"):
                cmd, env = flowops_cmd(n, kind, ["--count"])
                counts[f"flowops_{kind}_{n}"] = run_json(cmd, env=env)["counts"]

    summary = {}
    for c in configs:
        rows = samples[c["name"]]
        summary[c["name"]] = {
            "steps": c["steps"], "reps": len(rows),
            "median_seconds": median([r["seconds"] for r in rows]),
            "median_per_step_ms": median([r["per_step_ms"] for r in rows]),
            "all_seconds": [round(r["seconds"], 4) for r in rows],
        }
        if c["engine"] == "flowops":
            summary[c["name"]]["median_create_seconds"] = median(
                [r["create_seconds"] for r in rows])

    ratios = {}
    for n in args.steps:
        fo = summary[f"flowops_async_{n}"]["median_per_step_ms"]
        if not args.skip_flujo:
            ratios[f"flowops_vs_flujo_sqlite_{n}"] = fo / summary[f"flujo_sqlite_{n}"][
                "median_per_step_ms"]
            ratios[f"flowops_vs_flujo_memory_{n}"] = fo / summary[f"flujo_memory_{n}"][
                "median_per_step_ms"]
    if 100 in args.steps and 1000 in args.steps:
        for kind in ("async", "sync"):
            ratios[f"flowops_{kind}_1000_over_100_total"] = (
                summary[f"flowops_{kind}_1000"]["median_seconds"]
                / summary[f"flowops_{kind}_100"]["median_seconds"])
        if not args.skip_flujo:
            for mode in ("memory", "sqlite"):
                ratios[f"flujo_{mode}_1000_over_100_total"] = (
                    summary[f"flujo_{mode}_1000"]["median_seconds"]
                    / summary[f"flujo_{mode}_100"]["median_seconds"])

    commit = {"at_start": code_at_start, "at_end": code_version()}
    out = {"benchmark": "embedded", "machine": machine_info(), "commit": commit,
           "summary": summary, "ratios": ratios, "counts": counts, "samples": samples}
    path = save_result("embedded", out)
    print(json.dumps({"summary": summary, "ratios": ratios, "counts": counts}, indent=2))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
