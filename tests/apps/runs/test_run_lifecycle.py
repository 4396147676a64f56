"""Creating, starting, cancelling and recovering runs (CONTRACTS.md §1, §6)."""

from __future__ import annotations

import subprocess
import time

import pytest
from django.db.models.functions import Now

from apps.core.exceptions import ApplicationError
from apps.runs.models import Run, StepRun
from apps.runs.services import execution
from apps.runs.services.runs import (
    recover_stuck,
    run_cancel,
    run_create,
    run_is_stalled,
    run_start,
)
from flowops import InputValidationError
from tests.apps.runs.conftest import EMBEDDED, statuses

pytestmark = EMBEDDED

SCRIPT = '''
from flowops import Step, step

CALLS = []


@step
def split(text: str) -> list[int]:
    CALLS.append("split")
    return [int(p) for p in text.split()]


@step
def double(x: int) -> int:
    CALLS.append(f"double {x}")
    return x * 2


@step
def total(xs: list[int]) -> int:
    CALLS.append("total")
    return sum(xs)


pipeline = split >> Step.map_over("each", double) >> total
'''


def test_create_validates_input_and_makes_the_initial_rows(make_flow):
    flow = make_flow(SCRIPT)

    run = flow.create("1 2")

    assert (run.status, run.input, run.driver, run.version_id) == (
        Run.Status.PENDING, "1 2", "embedded", flow.version.id)
    assert (run.started_at, run.finished_at, run.output) == (None, None, None)
    assert [(s.key, s.name, s.kind, s.status, s.attempt) for s in
            StepRun.objects.filter(run=run).order_by("id")] == [
        ("split", "split", "step", "pending", 0),
        ("each", "each", "map", "pending", 0),
        ("each@items", "each", "decision", "pending", 0),
        ("total", "total", "step", "pending", 0)]
    assert flow.module.CALLS == []


def test_create_with_input_that_does_not_fit_writes_nothing(make_flow):
    flow = make_flow(SCRIPT)

    with pytest.raises(InputValidationError,
                       match=r"^input does not fit str: input: Input should be a valid string$"):
        flow.create(["not", "text"])

    assert (Run.objects.count(), StepRun.objects.count()) == (0, 0)


def test_create_takes_a_run_id(make_flow):
    flow = make_flow(SCRIPT)

    run = run_create(version=flow.version, loaded=flow.loaded, input="1", run_id="my-run")

    assert Run.objects.get(pk="my-run") == run
    assert StepRun.objects.filter(run_id="my-run").count() == 4


def test_start_drives_an_embedded_run_to_its_end(make_flow):
    flow = make_flow(SCRIPT)
    run = flow.create("1 2 3")

    run_start(run)

    assert (run.status, run.output, run.error) == (Run.Status.SUCCEEDED, 12, None)
    assert run.started_at is not None and run.finished_at >= run.started_at
    assert run.dispatch_generation == 1
    calls = flow.module.CALLS
    assert (calls[0], sorted(calls[1:4]), calls[4:]) == (
        "split", ["double 1", "double 2", "double 3"], ["total"])
    assert set(statuses(run).values()) == {"succeeded"}


def test_a_run_is_started_once(make_flow):
    flow = make_flow(SCRIPT)
    run = flow.run("1")

    with pytest.raises(ApplicationError, match=r"is succeeded, not pending$"):
        run_start(run)

    assert flow.module.CALLS == ["split", "double 1", "total"]


def test_cancel_a_pending_run_cancels_its_steps(make_flow):
    flow = make_flow(SCRIPT)
    run = flow.create("1")

    cancelled = run_cancel(run_id=run.id)

    assert cancelled.status == Run.Status.CANCELLED
    assert cancelled.finished_at is not None
    assert set(statuses(run).values()) == {"cancelled"}
    assert flow.module.CALLS == []


def test_starting_a_cancelled_run_names_its_status(make_flow):
    flow = make_flow(SCRIPT)
    run = flow.create("1")
    run_cancel(run_id=run.id)

    with pytest.raises(ApplicationError, match=r"is cancelled, not pending$"):
        run_start(run)


def test_starting_a_cancelled_run_runs_nothing(make_flow):
    flow = make_flow(SCRIPT)
    run = flow.create("1")
    run_cancel(run_id=run.id)

    with pytest.raises(ApplicationError):
        run_start(run)

    assert Run.objects.get(pk=run.id).status == Run.Status.CANCELLED
    assert flow.module.CALLS == []


# -- recovery of stalled runs ------------------------------------------------------------
def _crashed_in_split(flow) -> Run:
    """A run whose first step was claimed by a process that has since died."""
    run = flow.create("4 5")
    Run.objects.filter(pk=run.id).update(status=Run.Status.RUNNING, dispatch_generation=1)
    gate = execution.gate(run_id=run.id, key="split", task="step")
    assert gate.action is execution.Action.RUN
    child = subprocess.Popen(["true"])
    child.wait()
    StepRun.objects.filter(pk=gate.step.id).update(owner_pid=child.pid)
    return Run.objects.get(pk=run.id)


def test_a_stalled_run_is_recovered_and_finishes(make_flow, settings):
    settings.FLOWOPS_STEP_HEARTBEAT_TIMEOUT = 0.2
    flow = make_flow(SCRIPT)
    crashed = _crashed_in_split(flow)
    time.sleep(0.3)
    assert run_is_stalled(crashed) is True

    recovered = recover_stuck()

    assert recovered == [crashed.id]
    run = Run.objects.get(pk=crashed.id)
    assert (run.status, run.output, run.dispatch_generation) == (Run.Status.SUCCEEDED, 18, 2)
    split = StepRun.objects.get(run=run, key="split")
    assert (split.attempt, split.lost) == (2, 1)
    assert recover_stuck() == []


def test_a_run_that_moved_recently_is_not_stalled(make_flow, settings):
    settings.FLOWOPS_STEP_HEARTBEAT_TIMEOUT = 60
    flow = make_flow(SCRIPT)
    crashed = _crashed_in_split(flow)

    assert run_is_stalled(crashed) is False
    assert recover_stuck() == []
    assert Run.objects.get(pk=crashed.id).dispatch_generation == 1
    assert flow.module.CALLS == []


def test_a_run_with_a_live_step_is_not_stalled(make_flow, settings):
    settings.FLOWOPS_STEP_HEARTBEAT_TIMEOUT = 0.2
    flow = make_flow(SCRIPT)
    run = flow.create("1")
    Run.objects.filter(pk=run.id).update(status=Run.Status.RUNNING)
    execution.gate(run_id=run.id, key="split", task="step")  # owned by this live process
    time.sleep(0.3)
    # what the heartbeat thread does for a step that outlives a second
    StepRun.objects.filter(run=run, key="split").update(heartbeat_at=Now())

    assert run_is_stalled(Run.objects.get(pk=run.id)) is False
    assert recover_stuck() == []


def test_a_script_that_does_not_load_on_the_worker_fails_the_run_naming_the_cause(make_flow):
    # given a run whose pinned source fails to import where its steps run
    from apps.workflows.models import WorkflowVersion
    from workers.executor import step_task

    flow = make_flow(SCRIPT)
    run = run_create(version=flow.version, loaded=flow.loaded, input="1 2")
    Run.objects.filter(pk=run.id).update(status=Run.Status.RUNNING)
    broken = WorkflowVersion.objects.create(
        workflow=flow.version.workflow, sha256="0" * 64, entry="pipeline",
        source="import flowops_missing_package\n")
    Run.objects.filter(pk=run.id).update(version=broken)

    # when its first step is delivered
    result = step_task.apply(args=(run.id, "split"))

    # then the task ends quietly and the run fails with the import error; the step waits
    run.refresh_from_db()
    assert result.state == "IGNORED"
    assert run.status == Run.Status.FAILED
    assert run.error["step_key"] == "split"
    assert "flowops_missing_package" in run.error["message"]
    assert statuses(run)["split"] == "pending"
