"""The embedded driver: the same tasks, run in this process by a loop (CONTRACTS.md §5).

Eager Celery cannot carry ``Task.replace`` or long loops, so this loop walks the plan's
frontier itself: ``task.apply()`` per node, fork branches on a small thread pool, and a
decision's expansion spliced in where it stands. Iterative, so a 1000-iteration loop
does not recurse.
"""

from __future__ import annotations

import concurrent.futures
from collections import deque

from django.conf import settings
from django.db import connection

from apps.runs.models import Run
from apps.runs.services import runs as run_services
from flowops._plan import Call, Chain, Fork

SUCCESS = "SUCCESS"


def drive(run_id: str) -> None:
    """Run what is left of a run until it finishes, fails or pauses."""
    run = Run.objects.get(pk=run_id)
    _run(run_id, deque([run_services.frontier_of(run)]))


def _run(run_id: str, parts: deque) -> bool:
    from workers import executor

    while parts:
        part = parts.popleft()
        if isinstance(part, Chain):
            parts.extendleft(reversed(part.parts))
        elif isinstance(part, Fork):
            if not _fork(run_id, part):
                return False
        elif isinstance(part, Call):
            if part.task == "finish":
                result = executor.finish_task.apply(args=(run_id,))
            else:
                result = executor.TASKS[part.task].apply(args=(run_id, part.key))
            if result.state != SUCCESS:
                return False
            if part.task == "decide" and result.result is not None:
                parts.appendleft(result.result)
        else:
            raise TypeError(f"not a canvas part: {part!r}")
    return True


def _fork(run_id: str, fork: Fork) -> bool:
    width = min(fork.max_concurrency or settings.FLOWOPS_EMBEDDED_THREADS, len(fork.branches))
    if width <= 1:
        for branch in fork.branches:
            _run(run_id, deque([branch]))
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=width,
                                                   thread_name_prefix="flowops-branch") as pool:
            list(pool.map(lambda b: _branch(run_id, b), fork.branches))
    return _run(run_id, deque([fork.join]))


def _branch(run_id: str, branch: Chain) -> bool:
    try:
        return _run(run_id, deque([branch]))
    finally:
        connection.close()  # each pool thread has its own connection
