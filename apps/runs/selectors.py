"""Reads of runs for the CLI, the admin and (later) the API."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q

from apps.runs.models import JournalEntry, Run, StepRun


def run_steps(run: Run) -> list[StepRun]:
    return list(StepRun.objects.filter(run=run).order_by("id"))


def run_spend(run: Run) -> dict[str, Any]:
    """What the run spent and its limits, from its ledger (CONTRACTS.md §8)."""
    from apps.runs.services.budget import spend_of

    return spend_of(run.id)


def run_progress(run_id: str) -> tuple[int, int]:
    """(steps done, steps known) of a run."""
    counts = StepRun.objects.filter(run_id=run_id).exclude(kind="decision").aggregate(
        total=Count("id"), done=Count("id", filter=Q(status__in=["succeeded", "skipped"])))
    return counts["done"], counts["total"]


def step_document(step: StepRun) -> dict[str, Any]:
    return {
        "key": step.key, "name": step.name, "kind": step.kind, "status": step.status,
        "attempts": step.attempt + step.retries,
        "duration_ms": round(step.duration_ms, 3) if step.duration_ms is not None else None,
        "output": step.output, "cost_usd": float(step.cost_usd), "tokens": step.tokens,
        "cache_hit": step.cache_hit,
    }


def run_document(run: Run) -> dict[str, Any]:
    """The one JSON document of ``runflow --json`` and ``lens --json`` (CONTRACTS.md §2)."""
    return {
        "run_id": run.id,
        "status": run.status,
        "output": run.output,
        "error": run.error or None,
        "spend": run_spend(run),
        "steps": [step_document(s) for s in run_steps(run)],
    }


def run_journal(run: Run) -> list[JournalEntry]:
    return list(JournalEntry.objects.filter(run=run).order_by("scope", "seq"))


def run_list(*, limit: int = 20) -> list[Run]:
    return list(Run.objects.select_related("version__workflow").order_by("-created_at")[:limit])


def run_query(*, workflow_slug: str | None = None, status: str | None = None):
    """Runs, newest first, optionally of one workflow and in one status (the REST list)."""
    runs = Run.objects.select_related("version__workflow").order_by("-created_at", "-id")
    if workflow_slug is not None:
        runs = runs.filter(version__workflow__slug=workflow_slug)
    if status is not None:
        runs = runs.filter(status=status)
    return runs


def run_detail(run_id: str) -> Run | None:
    """One run with what its document shows: version, workflow and origin."""
    return Run.objects.select_related("version__workflow", "event", "trigger").filter(
        pk=run_id).first()
