"""Child runs: ``flowops.start_run`` from a script, and a parent waiting for its child.

A waiting parent is paused (``waiting_on`` = the child's id) with its step back to
pending, so no worker is held. When the child ends, ``parent_wake`` resumes the parent;
its step runs again from the top and the journal replays up to the wait, which now finds
the child ended. Recovery wakes parents whose wake-up was lost in a crash.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Now

from apps.core.exceptions import ApplicationError
from apps.runs import dispatch
from apps.runs.models import Run, StepRun
from apps.runs.services.runs import run_create, run_start
from apps.workflows.models import Workflow
from apps.workflows.services.versions import load_version
from flowops.exceptions import RunWaiting, StepFailed

log = logging.getLogger("flowops.runs")


def child_start(parent_id: str | None, workflow: str, input: Any,
                context: dict[str, Any] | None) -> str:
    found = Workflow.objects.filter(slug=workflow).select_related("active_version").first()
    if found is None:
        raise ApplicationError(f"start_run: no workflow {workflow!r}")
    version = found.active_version or found.versions.order_by("-created_at").first()
    if version is None:
        raise ApplicationError(f"start_run: workflow {workflow!r} has no version")
    run = run_create(version=version, loaded=load_version(version), input=input,
                     context_data=context, parent_id=parent_id)
    run_start(run, background=True)
    return run.id


def child_wait(child_id: str):
    """The child's result when it has ended, else ``RunWaiting`` (the parent pauses)."""
    from flowops.runs import ChildRun

    child = Run.objects.select_related("version__workflow").get(pk=child_id)
    if not child.is_terminal:
        raise RunWaiting(child_id)
    if child.status != Run.Status.SUCCEEDED:
        error = child.error or {}
        raise StepFailed(f"child run {child_id} ({child.version.workflow.slug}) "
                         f"{child.status}: {error.get('message', '')}".rstrip(": "))
    return ChildRun(run_id=child.id, workflow=child.version.workflow.slug,
                    status=child.status, output=child.output)


def parent_pause(run: Run, step: StepRun, child_id: str) -> bool:
    """Pause ``run`` at ``step`` until the child ends; False if it has ended already."""
    with transaction.atomic():
        # Locking the child orders this with the child's end: either the child's final
        # update comes after this commit (and its wake-up sees the pause) or before it.
        child = Run.objects.select_for_update().only("status").get(pk=child_id)
        if child.is_terminal:
            return False
        StepRun.objects.filter(id=step.id, attempt=step.attempt).update(
            status=StepRun.Status.PENDING, owner_pid=None, heartbeat_at=None)
        Run.objects.filter(id=run.id, status=Run.Status.RUNNING).update(
            status=Run.Status.PAUSED, paused_step_key=step.key, waiting_on=child_id,
            pause_message=f"waiting for child run {child_id}")
    return True


def parent_wake(child_id: str) -> None:
    """Resume the parent paused on this child (called after the child's end commits)."""
    parent_id = Run.objects.filter(pk=child_id).values_list("parent_id", flat=True).first()
    if not parent_id:
        return
    with transaction.atomic():
        woken = Run.objects.filter(id=parent_id, status=Run.Status.PAUSED,
                                   waiting_on=child_id).update(
            status=Run.Status.RUNNING, waiting_on="", paused_step_key="", pause_message="",
            dispatched_at=Now())
        if woken:
            transaction.on_commit(lambda: dispatch.dispatch_run(parent_id, background=True))
    if woken:
        log.info("run %s resumes: child run %s ended", parent_id, child_id)


def parents_wake_lost() -> list[str]:
    """Recovery: parents still paused on a child that has ended."""
    ended = Run.objects.filter(status__in=Run.TERMINAL).values("id")
    stuck = Run.objects.filter(Q(status=Run.Status.PAUSED) & ~Q(waiting_on=""),
                               waiting_on__in=ended).values_list("waiting_on", flat=True)
    children = list(stuck)
    for child_id in children:
        parent_wake(child_id)
    return children
