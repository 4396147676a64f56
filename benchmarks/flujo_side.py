"""Flujo side of bench_embedded.py: run N trivial steps once and print timing as JSON.

Runs under the Flujo venv (Python 3.13, ``flujo==0.6.11``), never under the project's.
Only the run is timed: imports, building the pipeline and the runner are outside.

    benchmarks/.work/flujo-venv/bin/python benchmarks/flujo_side.py --steps 100 \
        --mode sqlite --db benchmarks/.work/flujo.db
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--mode", choices=["sqlite", "memory"], required=True,
                        help="sqlite: SQLiteBackend (durable); memory: persist_state=False")
    parser.add_argument("--db", default="benchmarks/.work/flujo.db")
    parser.add_argument("--warmup", type=int, default=5,
                        help="run a pipeline of this many steps once before timing (0: none)")
    parser.add_argument("--tracing", action="store_true",
                        help="keep Flujo's default trace hooks (off unless given)")
    args = parser.parse_args()

    # Never pick up a state URI or flujo.toml from the environment.
    os.environ.pop("FLUJO_STATE_URI", None)

    import logging

    from flujo import Flujo, Pipeline, step

    # Flujo logs two INFO lines per step by default; keep it quiet so only the engine is timed.
    logging.getLogger("flujo").setLevel(logging.WARNING)

    @step
    async def inc(x: int) -> int:
        return x + 1

    def chain(n: int) -> Pipeline:
        pipeline = Pipeline.from_step(inc)
        for _ in range(n - 1):
            pipeline = pipeline >> inc
        return pipeline

    pipeline = chain(args.steps)

    kwargs: dict = {"enable_tracing": args.tracing}
    if args.mode == "sqlite":
        from flujo.state.backends.sqlite import SQLiteBackend

        db = Path(args.db)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        kwargs.update(state_backend=SQLiteBackend(db), persist_state=True)
    else:
        kwargs.update(persist_state=False)

    if args.warmup:
        # One short run first (same backend): lazy imports and schema creation are paid
        # once per process, as FlowOps' migrations and imports are.
        warm = Flujo(chain(args.warmup), pipeline_name="warmup", pipeline_id="warmup",
                     **kwargs)
        assert warm.run(0, run_id=f"warmup-{uuid.uuid4().hex}").success
    runner = Flujo(pipeline, pipeline_name="bench", pipeline_id="bench", **kwargs)

    started = time.perf_counter()
    result = runner.run(0, run_id=f"bench-{uuid.uuid4().hex}")
    elapsed = time.perf_counter() - started

    history = result.step_history
    output = history[-1].output if history else None
    ok = bool(result.success) and output == args.steps and len(history) == args.steps
    print(json.dumps({"engine": "flujo", "mode": args.mode, "tracing": args.tracing,
                      "steps": args.steps, "seconds": elapsed,
                      "per_step_ms": elapsed / args.steps * 1000, "ok": ok,
                      "output": output}), flush=True)
    # Flujo's aiosqlite connection threads can keep the interpreter from exiting (seen
    # once in ten runs, after the warm-up runner's loop closed): the figure is out, leave.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
