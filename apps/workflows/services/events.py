"""Incoming events: stored once per idempotency key, matched, turned into queued runs.

An endpoint calls ``event_accept`` and answers; it never runs a workflow. The event row,
its runs and their first step rows are one transaction; the runs go to their driver (the
broker, or the embedded dispatcher thread) only after it commits. A second delivery with
the same key finds the row and starts nothing (``Accepted.duplicate``); a delivery that
failed before commit left nothing behind, so its retry is processed in full.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from apps.runs.models import Run
from apps.runs.services.runs import run_create, run_start
from apps.workflows.models import Event, Trigger, Workflow, WorkflowVersion
from apps.workflows.services.versions import load_version
from flowops.usage import UsageLimits

log = logging.getLogger("flowops.events")


@dataclass
class Target:
    """One run an event starts: of ``version``, for ``trigger`` (None: started directly)."""

    version: WorkflowVersion
    trigger: Trigger | None = None
    event_data: dict[str, Any] | None = None
    input: Any = None
    context_data: dict[str, Any] | None = None
    limits: UsageLimits | None = None


@dataclass
class Accepted:
    event: Event
    runs: list[Run] = field(default_factory=list)
    duplicate: bool = False


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def triggers_active(integration: str, event: str | None = None):
    """Triggers of the workflows' active versions that listen to this kind of event."""
    found = Trigger.objects.filter(integration=integration, active=True).select_related(
        "workflow", "version")
    return found.filter(event=event) if event is not None else found


def event_found(source: str, key: str) -> Accepted | None:
    """The event already stored under (source, key), as a duplicate delivery sees it."""
    event = Event.objects.filter(source=source, key=key).first()
    return None if event is None else _duplicate(event)


def _duplicate(event: Event) -> Accepted:
    return Accepted(event=event, runs=list(event.runs.order_by("created_at")), duplicate=True)


def event_accept(*, source: str, key: str, body_hash: str, data: dict[str, Any],
                 targets: list[Target], workflow: Workflow | None = None,
                 detail: str = "") -> Accepted:
    """Store the event under (source, key) and start a run per target, or find it again.

    ``detail``: why an event with no targets was ignored, for people reading it.
    """
    if not targets and not detail:
        detail = "no active trigger matched"
    with transaction.atomic():
        event, created = Event.objects.get_or_create(
            source=source, key=key,
            defaults={"body_sha256": body_hash, "data": data, "workflow": workflow,
                      "detail": detail,
                      "status": Event.Status.STARTED if targets else Event.Status.IGNORED})
        if not created:
            return _duplicate(event)
        runs = [_start(event, target) for target in targets]
    log.info("event %s:%s started %d run(s)", source, key, len(runs))
    return Accepted(event=event, runs=runs)


def _start(event: Event, target: Target) -> Run:
    run = run_create(version=target.version, loaded=load_version(target.version),
                     input=target.input, context_data=target.context_data,
                     limits=target.limits, event_data=target.event_data, event=event,
                     trigger=target.trigger)
    run_start(run, background=True)
    return run
