"""Benchmark-only Celery tasks, loaded by the worker with ``-I bench_tasks`` (benchmarks/ on
PYTHONPATH), so that no project code changes are needed.

* ``bench.noop(run_id, key)``: the plain-Celery baseline, with the same two id arguments
  as a FlowOps step task and the same app settings (acks_late, prefetch 1, result backend).
* ``bench.callback()``: the body of the baseline chord.

With ``FLOWOPS_BENCH_COUNT_DIR`` set, every pool process counts its SQL statements and
commits (``_dbcount``) and rewrites its file in that directory after every task (the
counting runs are not the timed ones).
"""

from __future__ import annotations

import os

from celery import signals

from workers.celery import app


@app.task(name="bench.noop")
def noop(run_id: str, key: str) -> None:
    return None


@app.task(name="bench.callback")
def callback() -> None:
    return None


_COUNT_DIR = os.environ.get("FLOWOPS_BENCH_COUNT_DIR")

if _COUNT_DIR:

    @signals.worker_process_init.connect
    def _start_counting(**kwargs):
        import _dbcount

        _dbcount.install()
        _dbcount.reset()

    @signals.task_postrun.connect
    def _dump_counts(**kwargs):
        import _dbcount

        _dbcount.dump_to_dir(_COUNT_DIR)
