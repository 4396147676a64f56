"""Where the time of an embedded step goes: cProfile of one warm run, grouped by layer.

Runs the same measurement as bench_embedded.py (FlowOps side, fresh SQLite copy, one
5-step warm-up) under cProfile, then sums each function's own time into layers (Django
ORM query building, the SQLite driver, Celery's ``apply``, asyncio, typing/inspect, the
engine itself ...) and lists the engine functions by cumulative time. cProfile inflates
Python-heavy layers, so read the shares, not the absolute times.

    .venv/bin/python benchmarks/profile_embedded.py [--steps 1000] [--kind async|sync]
"""

from __future__ import annotations

import argparse
import json
import pstats
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BENCH_DIR,
    VENV_PY,
    fresh_sqlite,
    local_env,
    run_json,
    save_result,
    work_dir,
    write_chain_script,
)

LAYERS = [
    ("sqlite3 C calls (execute, commit, fetch)", ("sqlite3.Cursor", "sqlite3.Connection",
                                                   "SQLiteCursorWrapper", "_sqlite3")),
    ("Django ORM: query building/compiling", ("django/db/models/",)),
    ("Django DB backend wrappers", ("django/db/backends/", "django/db/transaction.py",
                                    "django/db/utils.py")),
    ("Django other", ("django/",)),
    ("Celery apply/trace", ("celery/", "kombu/", "billiard/", "vine/")),
    ("asyncio (event loop per step)", ("asyncio/", "selectors.py", "_asyncio", "socket.py")),
    ("pydantic", ("pydantic",)),
    ("typing/inspect (annotations, signatures)", ("typing.py", "inspect.py")),
    ("FlowOps engine code", ("/work/main/apps/", "/work/main/workers/", "/work/main/flowops/")),
    ("benchmark workflow script", ("benchmarks/.work/pipelines",)),
]


def layer_of(filename: str, funcname: str) -> str:
    text = f"{filename}:{funcname}"
    for name, needles in LAYERS:
        if any(n in text for n in needles):
            return name
    if filename == "~":
        return "builtins (getattr, isinstance, ...)"
    return "other stdlib/Python"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--kind", choices=["async", "sync"], default="async")
    args = parser.parse_args()

    script = write_chain_script(args.steps, kind=args.kind)
    warm = write_chain_script(5, kind=args.kind)
    prof = work_dir("profiles") / f"embedded_{args.steps}_{args.kind}.prof"
    result = run_json([str(VENV_PY), str(BENCH_DIR / "flowops_side.py"), "chain", "--script",
                       str(script), "--steps", str(args.steps), "--warmup-script", str(warm),
                       "--profile", str(prof)],
                      env=local_env(fresh_sqlite(f"profile_{args.steps}_{args.kind}")))
    stats = pstats.Stats(str(prof))
    total = stats.total_tt
    layers: dict[str, float] = defaultdict(float)
    for (filename, _line, funcname), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():
        layers[layer_of(filename, funcname)] += tt
    print(f"profiled run: {result['seconds']:.3f} s for {args.steps} steps "
          f"({result['seconds'] / args.steps * 1000:.3f} ms/step under cProfile)\n")
    print("self time by layer:")
    shares = {}
    for name, tt in sorted(layers.items(), key=lambda kv: -kv[1]):
        shares[name] = tt / total
        print(f"  {tt / total:6.1%}  {tt / args.steps * 1000:7.3f} ms/step  {name}")

    print("\nengine functions by cumulative time (per step):")
    engine = []
    for (filename, line, funcname), (_cc, nc, _tt, ct, _callers) in stats.stats.items():
        if "/work/main/" in filename and ".venv" not in filename and "benchmarks" not in filename:
            engine.append((ct, nc, f"{filename.replace('/work/main/', '')}:{line}({funcname})"))
    engine.sort(reverse=True)
    for ct, nc, name in engine[:30]:
        print(f"  {ct / args.steps * 1000:7.3f} ms/step  {nc:6d} calls  {name}")
    save_result(f"profile_{args.steps}_{args.kind}", {
        "seconds_under_profile": result["seconds"], "layers_share": shares,
        "engine_cumulative_ms_per_step": {n: ct / args.steps * 1000 for ct, _, n in engine[:30]},
        "profile_file": str(prof)})
    print(f"\nfull profile: {prof}\n{json.dumps({'ok': result['ok']})}")


if __name__ == "__main__":
    main()
