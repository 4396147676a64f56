"""``resume RUN_ID | --stuck``: continue runs from their checkpoints (CONTRACTS.md §6)."""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand

from apps.core.exceptions import ApplicationError
from apps.runs import cli
from apps.runs.models import Run
from apps.runs.services import runs as run_services
from apps.workflows.services import source_sha256


class Command(BaseCommand):
    help = "Resume a failed, dead or stalled run, or every stalled run with --stuck."

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("run_id", nargs="?", help="The run to resume.")
        target.add_argument("--stuck", action="store_true",
                            help="Resume every run whose steps died and that made no progress.")
        cli.add_budget_options(parser)
        parser.add_argument("--json", action="store_true", help="Print one JSON document.")
        parser.add_argument("--no-wait", action="store_true", help="Do not wait for the end.")

    def handle(self, *args, **opts):
        if opts["stuck"]:
            for run_id in run_services.recover_stuck():
                self.stdout.write(f"resumed {run_id}")
            return
        run = Run.objects.select_related("version").filter(pk=opts["run_id"]).first()
        if run is None:
            raise cli.usage_error(f"no run with id {opts['run_id']!r}")
        self._warn_if_edited(run)
        try:
            with cli.Progress(run.id, sys.stderr):
                run_services.run_resume(run_id=run.id, limits=cli.limits_from(opts))
                if run.driver == "celery" and not opts["no_wait"]:
                    cli.wait_for(run.id)
        except ApplicationError as exc:
            raise cli.usage_error(exc.message) from None
        code = cli.report(run, as_json=opts["json"], stdout=self.stdout, stderr=self.stderr)
        if code:
            sys.exit(code)

    def _warn_if_edited(self, run: Run) -> None:
        origin = Path(run.version.origin_path) if run.version.origin_path else None
        if origin is None or not origin.is_file():
            return
        if source_sha256(origin.read_text(encoding="utf-8")) != run.version.sha256:
            self.stderr.write(f"warning: {origin} changed since run {run.id} started; "
                              f"resuming with the pinned version {run.version.sha256[:12]}")
