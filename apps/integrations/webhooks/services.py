"""Webhooks: a signed JSON POST starts the workflow's webhook-triggered runs.

The per-workflow secret is never stored: it is derived from ``FLOWOPS_WEBHOOK_KEY`` and
the workflow's slug and ``webhook_nonce``, so the database holds nothing a reader could
sign with. A workflow has no secret until one is issued (its nonce is empty), and the
secret is shown once, when it is issued or rotated; rotating replaces the nonce, which
retires the old secret at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from django.conf import settings
from django.db import transaction

from apps.core.exceptions import Conflict
from apps.integrations.hooks import HookError, json_object
from apps.workflows.models import Workflow
from apps.workflows.services.events import Accepted, Target, body_sha256, event_accept
from flowops.context import envelope

SIGNATURE_HEADER = "X-FlowOps-Signature"


class WebhookError(HookError):
    """A delivery refused: ``http_status`` and a message naming why."""


def webhook_secret(workflow: Workflow) -> str:
    key = (settings.FLOWOPS_WEBHOOK_KEY or settings.SECRET_KEY).encode()
    message = f"{workflow.slug}:{workflow.webhook_nonce}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def webhook_issue(workflow: Workflow) -> str:
    """The workflow's first secret; refused once one was issued, since it is shown once."""
    with transaction.atomic():
        locked = Workflow.objects.select_for_update().get(pk=workflow.pk)
        if locked.webhook_nonce:
            raise Conflict(f"the webhook secret of {workflow.slug!r} was issued already and "
                           "is shown only once; rotate it to get a new one (the old one "
                           "stops working)")
        return webhook_rotate(workflow)


def webhook_rotate(workflow: Workflow) -> str:
    """A new secret for the workflow (the old one stops working); shown once."""
    with transaction.atomic():
        workflow.webhook_nonce = secrets.token_hex(16)
        workflow.save(update_fields=["webhook_nonce"])
    return webhook_secret(workflow)


def signature_for(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_receive(*, slug: str, body: bytes, signature: str | None,
                    idempotency_key: str | None) -> Accepted:
    """Check the delivery and start a run per active webhook trigger of ``slug``."""
    workflow = Workflow.objects.filter(slug=slug).first()
    if workflow is None:
        raise WebhookError(404, f"no workflow {slug!r}")
    if not workflow.webhook_nonce:
        raise WebhookError(401, f"no webhook secret was issued for {slug!r}; run "
                                f"`python manage.py webhook_secret {slug}`")
    expected = signature_for(webhook_secret(workflow), body)
    if not signature or not hmac.compare_digest(signature.encode(), expected.encode()):
        raise WebhookError(401, f"{SIGNATURE_HEADER} is missing or does not match the body")
    payload = json_object(body)
    triggers = list(workflow.triggers.filter(active=True, integration="webhook")
                    .select_related("version"))
    if not triggers:
        raise WebhookError(404, f"workflow {slug!r} has no active webhook trigger; "
                                "add @trigger(integration=\"webhook\") and register it")
    key = f"{slug}:{idempotency_key}" if idempotency_key else f"{slug}:{uuid.uuid4().hex}"
    targets = [Target(version=t.version, trigger=t, event_data=envelope(
        integration="webhook", event=t.event, trigger_id=t.id, payload=payload))
        for t in triggers]
    return event_accept(source="webhook", key=key, body_hash=body_sha256(body),
                        data={"payload": payload}, targets=targets, workflow=workflow)
