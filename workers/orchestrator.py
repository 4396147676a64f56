"""Turning runs into Celery work, and the periodic recovery of stalled runs."""

from __future__ import annotations

from apps.runs.models import Run
from apps.runs.services import runs as run_services
from workers.canvas import to_signature
from workers.celery import app


def dispatch_frontier(run_id: str) -> None:
    """Send a fresh canvas for what is left of a run (its start, a resume, a recovery)."""
    run = Run.objects.get(pk=run_id)
    frontier = run_services.frontier_of(run)
    to_signature(run_id, frontier).apply_async()


@app.task(name="flowops.recover_stuck")
def recover_stuck_task() -> list[str]:
    """Re-dispatch runs whose steps died with their worker (CONTRACTS.md §6)."""
    return run_services.recover_stuck(driver="celery")
