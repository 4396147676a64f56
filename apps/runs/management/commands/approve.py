"""``approve RUN_ID [--input-json JSON] | --reject TEXT``: answer a paused run."""

from __future__ import annotations

import getpass
import sys

from django.core.management.base import BaseCommand

from apps.core.exceptions import ApplicationError
from apps.runs import cli
from apps.runs.models import Run
from apps.runs.services import runs as run_services


class Command(BaseCommand):
    help = ("Approve a run paused at a human step (its input becomes the step's output), "
            "or reject it.")

    def add_arguments(self, parser):
        parser.add_argument("run_id")
        answer = parser.add_mutually_exclusive_group()
        answer.add_argument("--input-json", help="The approval's input, as JSON.")
        answer.add_argument("--reject", metavar="TEXT", help="Reject, with this reason.")
        parser.add_argument("--json", action="store_true", help="Print one JSON document.")

    def handle(self, *args, **opts):
        data = cli.parse_json_option("--input-json", opts["input_json"])
        who = f"cli:{getpass.getuser()}"
        try:
            if opts["reject"] is not None:
                run = run_services.run_reject(run_id=opts["run_id"], reason=opts["reject"],
                                              decided_by=who)
            else:
                with cli.Progress(opts["run_id"], sys.stderr):
                    run = run_services.run_approve(run_id=opts["run_id"], input=data,
                                                   decided_by=who)
                    if run.driver == "celery":
                        run = cli.wait_for(run.id)
        except ApplicationError as exc:
            raise cli.usage_error(exc.message) from None
        run = Run.objects.get(pk=run.id)
        code = cli.report(run, as_json=opts["json"], stdout=self.stdout, stderr=self.stderr)
        if code and opts["reject"] is None:
            sys.exit(code)
