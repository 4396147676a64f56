"""``serve``: the embedded default's server: web app, dispatcher, recovery and schedules in
one process."""

from __future__ import annotations

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = ("Serve the admin (and API) with an in-process dispatcher that runs embedded "
            "workflows in the background and a ticker that starts their schedules; "
            "registers the scripts in FLOWOPS_WORKFLOW_DIRS first. For production use "
            "gunicorn, Celery workers and beat.")

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args, **opts):
        from apps.integrations.schedules.ticker import Ticker
        from workers.embedded import Dispatcher

        self._register()
        threads = []
        if settings.FLOWOPS_DRIVER == "embedded":
            threads = [Dispatcher().start(), Ticker().start()]
        try:
            call_command("runserver", opts["addrport"], use_reloader=False)
        finally:
            for thread in reversed(threads):
                thread.stop()

    def _register(self) -> None:
        from apps.workflows.services.registry import workflows_discover

        for result in workflows_discover():
            if isinstance(result, Exception):
                self.stderr.write(f"not registered: {result}")
            else:
                self.stderr.write(f"registered {result.workflow.slug} "
                                  f"({len(result.triggers)} trigger(s))")
