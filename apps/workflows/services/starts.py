"""Runs started by a request (the REST API), with an optional ``Idempotency-Key``.

A request is an event of source ``api``: ``event_accept`` stores it once per key and starts
its run after commit, so the request never runs the workflow and a retried request finds
the run it started. Keys are scoped per workflow (the same key may start one run of each
workflow). A key sent again with another body is a conflict: the caller reused a key for a
different request, and answering with the first run would hide that.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from apps.core.exceptions import ApplicationError, Conflict
from apps.runs.models import Run
from apps.workflows.models import Workflow, WorkflowVersion
from apps.workflows.services.events import Target, event_accept
from apps.workflows.services.versions import load_version
from flowops.context import envelope
from flowops.exceptions import InputValidationError, ScriptError
from flowops.usage import UsageLimits

SOURCE = "api"


@dataclass
class Started:
    run: Run
    replayed: bool
    """True when the key was seen before with this body: ``run`` is the one it started."""


def workflow_version_to_run(workflow: Workflow) -> WorkflowVersion:
    """The active version, else the latest one (a workflow pinned by ``runflow`` only)."""
    version = workflow.active_version or workflow.versions.order_by("-created_at").first()
    if version is None:
        raise Conflict(f"workflow {workflow.slug!r} has no version; register its script first")
    return version


def workflow_run_request(*, workflow: Workflow, input: Any, context_data: dict[str, Any],
                         limits: UsageLimits | None, body: dict[str, Any], body_hash: str,
                         idempotency_key: str | None = None) -> Started:
    """Start a run of ``workflow`` for a request, or find the run this key started."""
    version = workflow_version_to_run(workflow)
    target = Target(version=version, input=input, context_data=context_data, limits=limits)
    try:
        is_script = load_version(version).is_script
    except ScriptError as exc:  # e.g. it imports a package this server does not have
        raise Conflict(f"workflow {workflow.slug!r}: its version {version.sha256[:12]} does "
                       f"not load here: {exc}") from None
    if is_script:
        # A FlowOps-style script reads the request's input as context.payload.
        target.input = None
        target.event_data = envelope(integration="api", payload=input)
    key = idempotency_key or uuid.uuid4().hex  # no key: every request is its own event
    try:
        accepted = event_accept(source=SOURCE, key=f"{workflow.slug}:{key}", body_hash=body_hash,
                                data=body, targets=[target], workflow=workflow)
    except InputValidationError as exc:
        raise _naming_field(exc) from None
    if not accepted.duplicate:
        return Started(run=accepted.runs[0], replayed=False)
    if accepted.event.body_sha256 != body_hash or not accepted.runs:
        raise Conflict(f"Idempotency-Key {idempotency_key!r} was already used for workflow "
                       f"{workflow.slug!r} with a different body",
                       {"idempotency_key": idempotency_key})
    return Started(run=accepted.runs[0], replayed=True)


def _naming_field(exc: InputValidationError) -> ApplicationError:
    """run_create's messages start with what did not fit: ``input ...`` or ``context ...``."""
    message = str(exc)
    field = "context" if message.startswith("context") else "input"
    return ApplicationError(message, {"errors": {field: message}})
