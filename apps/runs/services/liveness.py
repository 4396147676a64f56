"""Who owns a running step, whether that owner is alive, and heartbeats (CONTRACTS.md §6)."""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import psutil
from django.conf import settings
from django.db import connection
from django.db.models.functions import Now
from django.utils import timezone

from apps.runs.models import StepRun

HEARTBEAT_AFTER_S = 1.0  # steps shorter than this never write a heartbeat


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: float


_owner: Owner | None = None


def current_owner() -> Owner:
    """This process, computed again after a fork (Celery's pool children)."""
    global _owner
    pid = os.getpid()
    if _owner is None or _owner.pid != pid:
        _owner = Owner(host=socket.gethostname(), pid=pid,
                       started=psutil.Process(pid).create_time())
    return _owner


def heartbeat_timeout() -> timedelta:
    return timedelta(seconds=settings.FLOWOPS_STEP_HEARTBEAT_TIMEOUT)


def is_alive(step: StepRun, *, now: datetime | None = None) -> bool:
    """A running step is dead when its owner on this host is gone or its heartbeat is stale."""
    now = now or timezone.now()
    beat = step.heartbeat_at or step.started_at
    if beat is None or now - beat > heartbeat_timeout():
        return False
    me = current_owner()
    if step.owner_host != me.host or step.owner_pid is None:
        return True  # another host: the heartbeat is all we can see
    if step.owner_pid == me.pid:
        return step.owner_started is None or abs(step.owner_started - me.started) < 1
    try:
        process = psutil.Process(step.owner_pid)
        same = step.owner_started is None or abs(process.create_time() - step.owner_started) < 1
        return same and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class _Heartbeats:
    """One thread per process refreshes ``heartbeat_at`` of its long-running steps."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[int, float] = {}
        self._pid: int | None = None

    def track(self, step_id: int) -> None:
        with self._lock:
            self._active[step_id] = time.monotonic()
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._loop, name="flowops-heartbeat", daemon=True).start()

    def untrack(self, step_id: int) -> None:
        with self._lock:
            self._active.pop(step_id, None)

    def _loop(self) -> None:
        interval = max(0.2, min(HEARTBEAT_AFTER_S, settings.FLOWOPS_STEP_HEARTBEAT_TIMEOUT / 4))
        while True:
            time.sleep(interval)
            cutoff = time.monotonic() - HEARTBEAT_AFTER_S
            with self._lock:
                due = [sid for sid, since in self._active.items() if since <= cutoff]
            if not due:
                continue
            try:
                StepRun.objects.filter(id__in=due, status=StepRun.Status.RUNNING).update(
                    heartbeat_at=Now())
            except Exception:  # the database may be briefly away; the next beat retries
                pass
            finally:
                # Beats are seconds apart: an idle connection held by this thread for the
                # life of the process would count against the server's limit.
                connection.close()


heartbeats = _Heartbeats()
