"""``webhook_secret SLUG [--rotate]``: print a workflow's webhook signing secret."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from apps.integrations.webhooks.services import webhook_rotate, webhook_secret
from apps.runs import cli
from apps.workflows.models import Workflow


class Command(BaseCommand):
    help = ("Print the secret that signs webhook deliveries to a workflow "
            "(X-FlowOps-Signature: sha256=HMAC-SHA256(secret, body)). --rotate replaces it; "
            "the old one stops working at once.")

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--rotate", action="store_true")

    def handle(self, *args, **opts):
        workflow = Workflow.objects.filter(slug=opts["slug"]).first()
        if workflow is None:
            raise cli.usage_error(f"no workflow {opts['slug']!r}")
        secret = webhook_rotate(workflow) if opts["rotate"] else webhook_secret(workflow)
        self.stdout.write(secret)
