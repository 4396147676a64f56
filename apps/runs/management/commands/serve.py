"""``serve``: the embedded default's server: web app, dispatcher and recovery in one process."""

from __future__ import annotations

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = ("Serve the admin (and API) with an in-process dispatcher that runs embedded "
            "workflows in the background. For production use gunicorn and Celery workers.")

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args, **opts):
        from workers.embedded import Dispatcher

        dispatcher = None
        if settings.FLOWOPS_DRIVER == "embedded":
            dispatcher = Dispatcher().start()
        try:
            call_command("runserver", opts["addrport"], use_reloader=False)
        finally:
            if dispatcher is not None:
                dispatcher.stop()
