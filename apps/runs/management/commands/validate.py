"""``validate PATH``: load a script and print its plan and step keys; runs nothing."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from apps.runs import cli
from apps.workflows.services import load_source, read_script
from flowops.exceptions import ScriptError


class Command(BaseCommand):
    help = "Check a workflow script and print its plan (step keys and kinds)."

    def add_arguments(self, parser):
        parser.add_argument("path")

    def handle(self, *args, **opts):
        try:
            path, source = read_script(opts["path"])
            loaded = load_source(source, origin=str(path))
        except ScriptError as exc:
            raise cli.usage_error(str(exc)) from None
        first = loaded.plan.first_step
        self.stdout.write(f"{path}: ok; input {_type_name(first.input_annotation())}")
        for depth, key, kind in loaded.plan.describe():
            self.stdout.write(f"{'  ' * depth}{key}  [{kind}]")


def _type_name(annotation) -> str:
    return getattr(annotation, "__name__", None) or str(annotation)
