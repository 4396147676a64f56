"""Turning runs into Celery work, and the periodic recovery of stalled runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from apps.runs.models import Run, StepRun
from apps.runs.services import runs as run_services
from flowops._plan import Chain, Fork
from workers.canvas import to_signature
from workers.celery import app


def dispatch_frontier(run_id: str) -> None:
    """Send a fresh canvas for what is left of a run (its start, a resume, a recovery).

    Each fork in it gets its branch counts from the rows as they stand, under the join
    rows' locks: a branch that arrives meanwhile is counted exactly once, before or after.
    """
    run = Run.objects.get(pk=run_id)
    frontier = run_services.frontier_of(run)
    joins = [fork.join.key for fork in _forks(frontier)]
    if joins:
        with transaction.atomic():
            list(StepRun.objects.select_for_update().filter(run_id=run_id, key__in=joins)
                 .values_list("id", flat=True))
            frontier = run_services.frontier_of(run)
            for fork in _forks(frontier):
                _recount(run_id, fork)
    to_signature(run_id, frontier).apply_async()


def _forks(part) -> Iterator[Fork]:
    if isinstance(part, Fork):
        yield part
        for branch in part.branches:
            yield from _forks(branch)
    elif isinstance(part, Chain):
        for p in part.parts:
            yield from _forks(p)


def _recount(run_id: str, fork: Fork) -> None:
    open_ = len(fork.branches)
    sent = None
    if fork.max_concurrency:
        first = fork.positions[:fork.max_concurrency]
        sent = first[-1] + 1
    StepRun.objects.filter(run_id=run_id, key=fork.join.key).update(
        branches_open=open_, branches_sent=sent)


@app.task(name="flowops.recover_stuck")
def recover_stuck_task() -> list[str]:
    """Re-dispatch runs whose steps died with their worker (CONTRACTS.md §6)."""
    return run_services.recover_stuck(driver="celery")


# Beat's clock and this worker's may disagree by a little: a tick that arrives a moment
# before its cron time must still see that time as due, or that time would never run.
TICK_CLOCK_SKEW = timedelta(seconds=2)


@app.task(name="flowops.schedule_tick")
def schedule_tick_task(trigger_id: int) -> list[str]:
    """Beat's tick of one schedule trigger: the ids of the runs it started (none when its
    latest due time was handled already or is skipped)."""
    from apps.integrations.schedules.services import schedule_tick

    accepted = schedule_tick(trigger_id, now=timezone.now() + TICK_CLOCK_SKEW)
    return [] if accepted is None else [run.id for run in accepted.runs]
