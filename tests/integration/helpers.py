"""Starting runs and waiting for them, for the integration tests (fixtures: conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from apps.runs.models import Run, StepRun
from apps.runs.services import runs as run_services
from apps.workflows.services import workflow_version_from_path

WAIT_S = 60.0
POLL_S = 0.05
STOPPED = {*Run.TERMINAL, Run.Status.PAUSED}


def start_run(path: Path, *, input: Any = None, context: dict | None = None) -> Run:
    """Create and start a run of the script; the driver is ``settings.FLOWOPS_DRIVER``.

    With the embedded driver this returns once the run has stopped; with Celery at once.
    """
    version, loaded = workflow_version_from_path(path)
    run = run_services.run_create(version=version, loaded=loaded, input=input,
                                  context_data=context)
    run_services.run_start(run)
    return run


def run_embedded(settings, path: Path, *, input: Any = None) -> Run:
    """The same script run in this process by the embedded driver, for comparison."""
    previous = settings.FLOWOPS_DRIVER
    settings.FLOWOPS_DRIVER = "embedded"
    try:
        run = start_run(path, input=input)
    finally:
        settings.FLOWOPS_DRIVER = previous
    run.refresh_from_db()
    assert run.driver == "embedded"
    return run


def describe(run_id: str) -> str:
    run = Run.objects.get(pk=run_id)
    steps = "\n".join(f"  {s.key}: {s.status} attempt={s.attempt} lost={s.lost} "
                      f"output={s.output!r} error={s.error!r}"
                      for s in StepRun.objects.filter(run_id=run_id).order_by("id"))
    return f"run {run.id} is {run.status} (error={run.error!r})\n{steps}"


def wait_for_run(run_id: str, *, statuses: set[str] | None = None,
                 timeout: float = WAIT_S) -> Run:
    """Poll the Run row until it is terminal or paused (or in one of ``statuses``)."""
    wanted = statuses or STOPPED
    deadline = time.monotonic() + timeout
    while True:
        run = Run.objects.get(pk=run_id)
        if run.status in wanted:
            return run
        if time.monotonic() > deadline:
            pytest.fail(f"run did not reach {sorted(wanted)} in {timeout:g}s:\n"
                        f"{describe(run_id)}")
        time.sleep(POLL_S)


def wait_until(predicate: Callable[[], Any], what: str, *, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting until {what}")
        time.sleep(POLL_S)


def snapshot(run: Run) -> dict[str, tuple[str, Any]]:
    """Every StepRun of a run: key -> (status, output)."""
    return {s.key: (s.status, s.output)
            for s in StepRun.objects.filter(run=run).order_by("key")}


def contexts(run: Run) -> dict[str, Any]:
    """Every StepRun of a run: key -> the context after it."""
    return {s.key: s.context for s in StepRun.objects.filter(run=run)}


def step_row(run: Run, key: str) -> StepRun:
    return StepRun.objects.get(run=run, key=key)
