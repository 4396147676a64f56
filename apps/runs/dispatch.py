"""The one lazy bridge from the apps to the drivers in ``workers`` (STYLE.md: import direction).

The apps stay importable and testable without Celery; a run's ``driver`` picks where its
frontier goes: Celery canvas on the broker, or the embedded loop in this process.
"""

from __future__ import annotations


def dispatch_run(run_id: str, *, background: bool = False) -> None:
    """Hand a run's current frontier to its driver (called after commit).

    An embedded run is driven in this thread unless ``background`` or ``serve``'s
    dispatcher runs; then the dispatcher thread drives it (started here if need be).
    """
    from apps.runs.models import Run

    driver = Run.objects.values_list("driver", flat=True).get(pk=run_id)
    if driver == "celery":
        from workers.orchestrator import dispatch_frontier

        dispatch_frontier(run_id)
    else:
        from workers import embedded

        if embedded.current_dispatcher is not None or background:
            embedded.background_dispatcher().submit(run_id)
        else:
            embedded.drive(run_id)
