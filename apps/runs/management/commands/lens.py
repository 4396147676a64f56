"""``lens [RUN_ID] [--json]``: what happened in a run, step by step."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from apps.runs import cli
from apps.runs.models import JournalEntry, Reservation, Run, RunBudget
from apps.runs.selectors import run_document, run_journal, run_list, run_steps
from apps.runs.services.budget import describe


class Command(BaseCommand):
    help = "List recent runs, or show one run's steps, outputs, errors and journal."

    def add_arguments(self, parser):
        parser.add_argument("run_id", nargs="?")
        parser.add_argument("--json", action="store_true", help="Print one JSON document.")
        parser.add_argument("--limit", type=int, default=20, help="Runs to list.")

    def handle(self, *args, **opts):
        if not opts["run_id"]:
            return self._list(opts)
        run = Run.objects.select_related("version__workflow").filter(pk=opts["run_id"]).first()
        if run is None:
            raise cli.usage_error(f"no run with id {opts['run_id']!r}")
        if opts["json"]:
            document = run_document(run)
            document["journal"] = [_entry(e) for e in run_journal(run)]
            self.stdout.write(json.dumps(document, default=str))
            return
        self._show(run)

    def _list(self, opts) -> None:
        runs = run_list(limit=opts["limit"])
        if opts["json"]:
            self.stdout.write(json.dumps([
                {"run_id": r.id, "workflow": r.version.workflow.slug, "status": r.status,
                 "created_at": r.created_at.isoformat()} for r in runs]))
            return
        for r in runs:
            self.stdout.write(f"{r.id}  {r.status:<10} {r.version.workflow.slug:<24} "
                              f"{r.created_at:%Y-%m-%d %H:%M:%S}")

    def _show(self, run: Run) -> None:
        out = self.stdout.write
        out(f"run {run.id}  {run.status}  workflow {run.version}  driver {run.driver}")
        if run.error:
            out(f"error in {run.error.get('step_key')}: {run.error.get('type')}: "
                f"{run.error.get('message')}")
        budget = RunBudget.objects.filter(run=run).first()
        if budget is not None:
            out(f"budget: {describe(budget)}")
        for s in run_steps(run):
            took = f"{s.duration_ms:.1f}ms" if s.duration_ms is not None else "-"
            line = (f"  {s.key:<40} {s.status:<10} attempts {s.attempt + s.retries}  {took}"
                    f"  ${float(s.cost_usd):.6f}  {s.tokens} tok")
            if s.cache_hit:
                line += "  (cache hit)"
            out(line)
            if s.output is not None:
                out(f"      -> {_short(s.output)}")
            if s.error:
                out(f"      !! {s.error.get('type')}: {s.error.get('message')}")
        calls = Reservation.objects.filter(run=run).order_by("id")
        if calls:
            out("calls:")
        for c in calls:
            settled = f"${c.settled_usd:.6f} / {c.settled_tokens} tok" if c.settled_usd \
                is not None else "-"
            out(f"  {c.step_key} {c.call} {c.model} {c.state}: reserved ${c.usd:.6f} / "
                f"{c.tokens} tok, settled {settled}")
        journal = run_journal(run)
        if journal:
            out("journal:")
        for e in journal:
            flag = " UNCERTAIN (intent without result)" if e.state == JournalEntry.State.INTENT \
                else ""
            out(f"  {e.scope}/{e.seq}:{e.call} {e.state}{' effect' if e.effect else ''}{flag}")


def _entry(e: JournalEntry) -> dict:
    return {"scope": e.scope, "seq": e.seq, "call": e.call, "state": e.state,
            "effect": e.effect, "result": e.result, "error": e.error}


def _short(value, limit: int = 100) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
