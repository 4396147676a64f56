"""``register_workflow PATH...``: make scripts the active versions of their workflows."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.runs import cli
from apps.workflows.services.registry import workflow_register, workflows_discover
from flowops.exceptions import ScriptError


class Command(BaseCommand):
    help = ("Register workflow scripts: each becomes its workflow's active version and its "
            "@trigger declarations start matching events. No PATH: every script in "
            "FLOWOPS_WORKFLOW_DIRS.")

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="*", metavar="PATH")

    def handle(self, *args, **opts):
        if opts["paths"]:
            results = []
            for path in opts["paths"]:
                try:
                    results.append(workflow_register(path))
                except ScriptError as exc:  # all or nothing is per file: earlier ones stay
                    self._report(results)
                    raise cli.usage_error(f"not registered: {exc}") from None
        else:
            if not settings.FLOWOPS_WORKFLOW_DIRS:
                raise cli.usage_error("give script paths, or set FLOWOPS_WORKFLOW_DIRS")
            results = workflows_discover()
        self._report(results)
        failed = [r for r in results if isinstance(r, ScriptError)]
        if failed:
            raise cli.usage_error(f"{len(failed)} script(s) not registered")

    def _report(self, results) -> None:
        for result in results:
            if isinstance(result, ScriptError):
                self.stderr.write(f"not registered: {result}")
                continue
            triggers = ", ".join(f"{t.integration}/{t.event}" for t in result.triggers)
            self.stdout.write(f"registered {result.workflow.slug} "
                              f"(version {result.version.sha256[:12]}, "
                              f"{'script' if result.loaded.is_script else 'pipeline'}; "
                              f"triggers: {triggers or 'none'})")
