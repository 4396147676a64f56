"""``runflow PATH``: run a workflow script's ``pipeline`` durably (CONTRACTS.md §2)."""

from __future__ import annotations

import sys

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.core.exceptions import ApplicationError
from apps.runs import cli
from apps.runs.models import Run
from apps.runs.services import runs as run_services
from apps.workflows.services import workflow_version_from_path
from flowops.exceptions import InputValidationError, ScriptError


class Command(BaseCommand):
    help = "Run a workflow script's `pipeline` and print its output."

    def add_arguments(self, parser):
        parser.add_argument("path", help="Workflow script with a module-level `pipeline`.")
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--input", help="Input as a string.")
        source.add_argument("--input-json", help="Input as JSON.")
        parser.add_argument("--context", help="Initial context data as a JSON object.")
        parser.add_argument("--run-id", help="Resume this run, or start a new one with this id.")
        cli.add_budget_options(parser)
        parser.add_argument("--json", action="store_true", help="Print one JSON document.")
        parser.add_argument("--no-wait", action="store_true",
                            help="Return once the run is accepted (needs Celery workers).")

    def handle(self, *args, **opts):
        data = opts["input"]
        if opts["input_json"] is not None:
            data = cli.parse_json_option("--input-json", opts["input_json"])
        context = cli.parse_json_option("--context", opts["context"], want_object=True)
        limits = cli.limits_from(opts)
        if opts["no_wait"] and settings.FLOWOPS_DRIVER != "celery":
            raise cli.usage_error("--no-wait needs Celery workers (FLOWOPS_DRIVER=celery); "
                                  "in the embedded default start `python manage.py serve`")
        try:
            version, loaded = workflow_version_from_path(opts["path"])
        except ScriptError as exc:
            raise cli.usage_error(str(exc)) from None
        run = self._existing(opts["run_id"], version)
        if run is None:
            try:
                run = run_services.run_create(version=version, loaded=loaded, input=data,
                                              context_data=context, run_id=opts["run_id"],
                                              limits=limits)
            except InputValidationError as exc:
                raise cli.usage_error(f"{opts['path']}: {exc}") from None
            self._start(run, opts)
        else:
            self._continue(run, limits)
        return self._finish(run, opts)

    def _existing(self, run_id: str | None, version) -> Run | None:
        if not run_id:
            return None
        run = Run.objects.select_related("version__workflow").filter(pk=run_id).first()
        if run is None:
            return None
        if run.version_id != version.id:
            raise cli.usage_error(
                f"run {run_id} belongs to {run.version} ({run.version.origin_path}), "
                f"not {version} ({version.origin_path})")
        return run

    def _start(self, run: Run, opts) -> None:
        with cli.Progress(run.id, sys.stderr):
            run_services.run_start(run)

    def _continue(self, run: Run, limits) -> None:
        """``--run-id`` of an unfinished run resumes it; a finished one is only reported."""
        resumable = run.status in (Run.Status.FAILED, Run.Status.HALTED) or (
            run.status == Run.Status.RUNNING and run.driver == "embedded")
        if not resumable:
            return
        try:
            with cli.Progress(run.id, sys.stderr):
                run_services.run_resume(run_id=run.id, limits=limits)
        except ApplicationError as exc:
            raise cli.usage_error(exc.message) from None

    def _finish(self, run: Run, opts):
        run.refresh_from_db()
        if (run.driver == "celery" or run.waiting_on) and not opts["no_wait"]:
            with cli.Progress(run.id, sys.stderr):
                run = cli.wait_for(run.id)
        code = cli.report(run, as_json=opts["json"], stdout=self.stdout, stderr=self.stderr)
        if code:
            sys.exit(code)
