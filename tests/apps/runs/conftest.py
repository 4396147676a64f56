"""Fixtures for running workflow scripts end to end with the embedded driver.

``make_flow(source)`` writes a script, pins it as a WorkflowVersion and returns a ``Flow``
whose ``run()`` creates and starts a run; in embedded mode ``run_start`` drives the run to
its end (or its pause) in this process once the start commits. A script's module-level
state (call counters) is reachable as ``flow.module``: the engine loads each source once
per process, by its hash, and the test sees that same module.
"""

from __future__ import annotations

import contextlib
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from apps.runs.models import JournalEntry, Run, StepRun
from apps.runs.services.runs import run_create, run_start
from apps.workflows.models import WorkflowVersion
from apps.workflows.services import LoadedWorkflow, workflow_version_from_path
from tests.fakes.fixtures import (  # noqa: F401  (fixtures)
    fake_openai,
    fake_slack,
    openai_env,
    slack_env,
)

# The engine commits as it goes and runs branches on threads, so these tests need real
# transactions. Flushing only FlowOps' tables (and skipping post_migrate) after each test
# keeps teardown cheap.
EMBEDDED = pytest.mark.django_db(transaction=True,
                                 available_apps=["apps.core", "apps.workflows", "apps.runs"])


@dataclass
class Flow:
    path: Path
    version: WorkflowVersion
    loaded: LoadedWorkflow

    @property
    def module(self) -> Any:
        return self.loaded.module

    def create(self, input: Any = None, context: dict | None = None) -> Run:
        return run_create(version=self.version, loaded=self.loaded, input=input,
                          context_data=context)

    def run(self, input: Any = None, context: dict | None = None) -> Run:
        run = self.create(input, context)
        run_start(run)
        run.refresh_from_db()
        return run


@pytest.fixture
def make_flow(transactional_db, write_script, request):
    """Write, pin and load a script (from one or more source parts, each dedented).

    The source is made unique to this test, so that module-level counters are never
    shared with another test's identical script.
    """

    def make(*sources: str, name: str = "flow.py") -> Flow:
        path = write_script("\n".join(textwrap.dedent(s).strip("\n") for s in sources), name)
        marker = f"# test: {request.node.nodeid}\n"
        path.write_text(marker + path.read_text(encoding="utf-8"), encoding="utf-8")
        version, loaded = workflow_version_from_path(path)
        return Flow(path=path, version=version, loaded=loaded)

    return make


@pytest.fixture(scope="session", autouse=True)
def _close_journal_thread_connections(django_db_setup, django_db_blocker):
    """Close the connections that the journal's threads (async steps) keep open.

    Those threads live as long as the process and never close their connections, which
    makes dropping the test database fail ("being accessed by other users"). Reported as
    an engine issue; until then, close them before the database is dropped.
    """
    yield
    from apps.runs.services import journal

    pool = getattr(journal, "_db_threads", None)
    if pool is None:
        return
    width = pool._max_workers
    together = threading.Barrier(width)

    def close() -> None:
        connection.close()
        with contextlib.suppress(threading.BrokenBarrierError):
            together.wait(timeout=2)  # one task per thread: all of them run at once

    for future in [pool.submit(close) for _ in range(width)]:
        future.result()


def steps_of(run: Run) -> dict[str, StepRun]:
    """The run's StepRun rows by key."""
    return {s.key: s for s in StepRun.objects.filter(run_id=run.id)}


def statuses(run: Run) -> dict[str, str]:
    return {s.key: s.status for s in StepRun.objects.filter(run_id=run.id)}


def journal_of(run: Run) -> list[tuple[str, int, str, bool, str, Any]]:
    """(scope, seq, call, effect, state, result) of every journal entry, in order."""
    return list(JournalEntry.objects.filter(run_id=run.id).order_by("scope", "seq").values_list(
        "scope", "seq", "call", "effect", "state", "result"))
