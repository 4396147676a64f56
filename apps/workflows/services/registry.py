"""Registration: a script's source becomes the workflow's active version and triggers.

Workflow, version and Trigger rows are written in one transaction that also switches the
workflow's active version, so an event arriving right after registration is matched
against exactly the new triggers, never a mix of old and new.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.integrations.schedules.beat import schedule_tasks_sync
from apps.workflows.models import Trigger, Workflow, WorkflowVersion
from apps.workflows.services.versions import (
    LoadedWorkflow,
    load_source,
    read_script,
    slug_for,
    workflow_version_get_or_create,
)
from flowops.exceptions import ScriptError

log = logging.getLogger("flowops.workflows")


@dataclass
class Registered:
    workflow: Workflow
    version: WorkflowVersion
    triggers: list[Trigger]
    loaded: LoadedWorkflow


def workflow_register(path: str | Path) -> Registered:
    """Load, check and register the script at ``path`` (ScriptError names file and line)."""
    resolved, source = read_script(path)
    return workflow_register_source(source, origin=str(resolved),
                                    slug=None, default_slug=resolved.stem)


def workflow_register_source(source: str, *, origin: str, slug: str | None = None,
                             default_slug: str = "workflow") -> Registered:
    """Register source text (an upload, a file): checks it by loading it first."""
    loaded = load_source(source, origin=origin)
    slug = slug or slug_for(Path(default_slug), loaded.module)
    with transaction.atomic():
        version = workflow_version_get_or_create(source=source, origin_path=origin,
                                                 slug=slug, entry=loaded.entry)
        workflow = Workflow.objects.select_for_update().get(pk=version.workflow_id)
        triggers = _activate(workflow, version, loaded)
        schedule_tasks_sync(workflow)  # beat's table follows the active triggers
        workflow.active_version = version
        workflow.save(update_fields=["active_version"])
    return Registered(workflow=workflow, version=version, triggers=triggers, loaded=loaded)


def _activate(workflow: Workflow, version: WorkflowVersion,
              loaded: LoadedWorkflow) -> list[Trigger]:
    Trigger.objects.filter(workflow=workflow, active=True).exclude(version=version).update(
        active=False)
    existing = list(version.triggers.all())
    if existing:  # the same source registered again keeps its rows (and schedule state)
        # Reactivated ones start afresh: a schedule does not fire for times it was off.
        Trigger.objects.filter(version=version, active=False).update(
            active=True, active_since=timezone.now())
        return list(version.triggers.all())
    return Trigger.objects.bulk_create(
        Trigger(workflow=workflow, version=version, integration=spec.integration,
                event=spec.event, options=spec.options, line=spec.line)
        for spec in loaded.triggers)


def workflows_discover(dirs: list[str] | None = None) -> list[Registered | ScriptError]:
    """Register every ``*.py`` in ``FLOWOPS_WORKFLOW_DIRS``; a bad file does not stop the
    others: its ScriptError is returned (and logged) in its place."""
    results: list[Registered | ScriptError] = []
    for directory in settings.FLOWOPS_WORKFLOW_DIRS if dirs is None else dirs:
        for path in sorted(Path(directory).expanduser().glob("*.py")):
            try:
                results.append(workflow_register(path))
            except ScriptError as exc:
                log.error("not registered: %s", exc)
                results.append(exc)
    return results
