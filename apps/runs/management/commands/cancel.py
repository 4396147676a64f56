"""``cancel RUN_ID``: stop a run; queued steps meet the pre-check and end quietly."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from apps.core.exceptions import ApplicationError
from apps.runs import cli
from apps.runs.services import runs as run_services


class Command(BaseCommand):
    help = "Cancel a run that has not finished."

    def add_arguments(self, parser):
        parser.add_argument("run_id")

    def handle(self, *args, **opts):
        try:
            run = run_services.run_cancel(run_id=opts["run_id"])
        except ApplicationError as exc:
            raise cli.usage_error(exc.message) from None
        self.stdout.write(f"run {run.id} {run.status}")
