"""The embedded driver: the same tasks, run in this process by a loop (CONTRACTS.md §5).

Eager Celery cannot carry ``Task.replace`` or long loops, so this loop walks the plan's
frontier itself: ``task.apply()`` per node, fork branches on a small thread pool, and a
decision's expansion spliced in where it stands. Iterative, so a 1000-iteration loop
does not recurse.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections import deque

from django.conf import settings
from django.db import connection

from apps.runs.models import Run
from apps.runs.services import runs as run_services
from apps.runs.services.execution import close_thread_loop
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
        close_thread_loop()


class Dispatcher:
    """``serve``'s background driver: runs handed to it, and recovery of stalled runs.

    While it runs, ``apps.runs.dispatch`` queues embedded runs here instead of driving
    them inline, so a web request never executes a workflow.
    """

    def __init__(self, *, recovery_interval: float | None = None):
        import queue
        import threading

        self.queue: queue.Queue[str] = queue.Queue()
        self.recovery_interval = recovery_interval or settings.FLOWOPS_RECOVERY_INTERVAL
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="flowops-dispatcher",
                                        daemon=True)

    def start(self, *, current: bool = True) -> Dispatcher:
        """``current``: every embedded run of this process goes here (``serve``)."""
        global current_dispatcher
        if current:
            current_dispatcher = self
        self._thread.start()
        return self

    def stop(self) -> None:
        global current_dispatcher
        if current_dispatcher is self:
            current_dispatcher = None
        self._stop.set()
        self._thread.join(timeout=10)

    def submit(self, run_id: str) -> None:
        self.queue.put(run_id)

    def _loop(self) -> None:
        import logging
        import queue
        import time

        log = logging.getLogger("flowops.dispatcher")
        next_recovery = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_recovery:
                    next_recovery = time.monotonic() + self.recovery_interval
                    for run_id in run_services.recover_stuck(driver="embedded"):
                        log.warning("recovered run %s", run_id)
                try:
                    run_id = self.queue.get(timeout=0.5)
                except queue.Empty:
                    continue
                drive(run_id)
            except Exception:  # one bad run must not stop the dispatcher; it is logged
                log.exception("dispatcher error")
            finally:
                connection.close()


current_dispatcher: Dispatcher | None = None
_background: Dispatcher | None = None
_start_lock = threading.Lock()


def background_dispatcher() -> Dispatcher:
    """``serve``'s dispatcher, or one started for a process that has none (a test server,
    ``runserver``) so that events never run a workflow in the request thread; runs
    started otherwise in that process are still driven where they start."""
    global _background
    with _start_lock:
        if current_dispatcher is not None:
            return current_dispatcher
        if _background is None:
            _background = Dispatcher().start(current=False)
        return _background


def stop_background() -> None:
    """Stop the dispatcher ``background_dispatcher`` started, if any (tests, shutdown)."""
    global _background
    with _start_lock:
        dispatcher, _background = _background, None
    if dispatcher is not None:
        dispatcher.stop()
