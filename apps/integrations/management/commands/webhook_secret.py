"""``webhook_secret SLUG [--rotate]``: issue (or replace) a workflow's webhook signing
secret and print it, once."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from apps.core.exceptions import Conflict
from apps.integrations.webhooks.services import webhook_issue, webhook_rotate
from apps.runs import cli
from apps.workflows.models import Workflow


class Command(BaseCommand):
    help = ("Issue the secret that signs webhook deliveries to a workflow "
            "(X-FlowOps-Signature: sha256=HMAC-SHA256(secret, body)) and print it; it is "
            "shown only once. --rotate replaces it; the old one stops working at once.")

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--rotate", action="store_true")

    def handle(self, *args, **opts):
        workflow = Workflow.objects.filter(slug=opts["slug"]).first()
        if workflow is None:
            raise cli.usage_error(f"no workflow {opts['slug']!r}")
        try:
            secret = webhook_rotate(workflow) if opts["rotate"] else webhook_issue(workflow)
        except Conflict as exc:
            raise cli.usage_error(exc.message) from None
        self.stdout.write(secret)
