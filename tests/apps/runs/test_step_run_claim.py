"""The gate before every task body: claim, duplicates, takeover, fencing (CONTRACTS.md §6)."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.runs.models import JournalEntry, Run, StepRun
from apps.runs.services import execution
from apps.runs.services.execution import Action
from apps.runs.services.journal import ClaimLost, DatabaseJournal
from tests.apps.runs.conftest import EMBEDDED

pytestmark = EMBEDDED

SCRIPT = '''
from flowops import Step, step

CALLS = []


@step
def parse(text: str) -> int:
    CALLS.append(text)
    return int(text)


@step
def double(x: int) -> int:
    return x * 2


pipeline = parse >> double >> Step.parallel(
    "fan", {"a": double, "b": double, "c": Step.map_over("each", double)})
'''


@pytest.fixture
def flow(make_flow):
    return make_flow(SCRIPT)


@pytest.fixture
def run(flow):
    """A run marked running with nothing dispatched: the tests deliver tasks by hand."""
    created = flow.create("21")
    Run.objects.filter(pk=created.id).update(status=Run.Status.RUNNING)
    created.refresh_from_db()
    return created


def row(run: Run, key: str) -> StepRun:
    return StepRun.objects.get(run_id=run.id, key=key)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_claim_increments_the_attempt_and_records_the_owner(run):
    gate = execution.gate(run_id=run.id, key="parse", task="step")

    assert gate.action is Action.RUN
    step = row(run, "parse")
    assert (step.status, step.attempt, step.lost) == ("running", 1, 0)
    assert (step.owner_host, step.owner_pid) == (socket.gethostname(), os.getpid())
    assert step.heartbeat_at is not None and step.started_at is not None
    assert gate.step.attempt == 1


def test_a_second_delivery_of_a_live_running_step_is_ignored(run):
    execution.gate(run_id=run.id, key="parse", task="step")

    second = execution.gate(run_id=run.id, key="parse", task="step")

    assert (second.action, second.reason) == (Action.IGNORE, "running elsewhere")
    assert row(run, "parse").attempt == 1


def test_a_done_step_is_resent_until_its_successor_starts(run, flow):
    gate = execution.gate(run_id=run.id, key="parse", task="step")
    assert execution.step_execute(gate) == "done"
    assert flow.module.CALLS == ["21"]

    again = execution.gate(run_id=run.id, key="parse", task="step")
    assert (again.action, again.reason) == (Action.RESEND, "already done")

    nxt = execution.gate(run_id=run.id, key="double", task="step")
    assert nxt.action is Action.RUN

    duplicate = execution.gate(run_id=run.id, key="parse", task="step")
    assert (duplicate.action, duplicate.reason) == (Action.IGNORE, "already done")
    assert flow.module.CALLS == ["21"]
    assert row(run, "parse").attempt == 1


@pytest.mark.parametrize("status", ["pending", "paused", "failed", "halted", "cancelled",
                                    "succeeded"])
def test_steps_of_a_run_that_is_not_running_are_ignored(run, status):
    Run.objects.filter(pk=run.id).update(status=status)

    gate = execution.gate(run_id=run.id, key="parse", task="step")

    assert (gate.action, gate.reason) == (Action.IGNORE, f"run is {status}")
    assert (row(run, "parse").status, row(run, "parse").attempt) == ("pending", 0)


def test_a_step_of_an_unknown_run_or_key_is_ignored(run):
    assert execution.gate(run_id="nope", key="parse", task="step").reason == "unknown run nope"
    # a step whose predecessor is not done is not claimed (a lost checkpoint's successor)
    gate = execution.gate(run_id=run.id, key="fan/a/double", task="step")
    assert (gate.action, gate.reason) == (Action.IGNORE, "waits for double")
    StepRun.objects.filter(run_id=run.id, key__in=["parse", "double"]).update(
        status="succeeded")
    gate = execution.gate(run_id=run.id, key="fan/a/double", task="step")
    assert gate.action is Action.RUN
    # a map item before its map has expanded
    gate = execution.gate(run_id=run.id, key="fan/c/each[0]/double", task="step")
    assert (gate.action, gate.reason) == (Action.IGNORE, "no step fan/c/each[0]/double")


def test_a_failed_step_is_not_claimed(run):
    StepRun.objects.filter(run_id=run.id, key="parse").update(status="failed")

    gate = execution.gate(run_id=run.id, key="parse", task="step")

    assert (gate.action, gate.reason) == (Action.IGNORE, "step is failed")


def test_a_join_whose_branches_are_not_done_is_ignored(run):
    gate = execution.gate(run_id=run.id, key="fan", task="join")

    assert (gate.action, gate.reason) == (Action.IGNORE, "join fan not ready")
    assert row(run, "fan").attempt == 0


def test_a_dead_owner_is_taken_over_with_a_new_attempt(run):
    execution.gate(run_id=run.id, key="parse", task="step")
    StepRun.objects.filter(run_id=run.id, key="parse").update(owner_pid=dead_pid())

    gate = execution.gate(run_id=run.id, key="parse", task="step")

    assert gate.action is Action.RUN
    step = row(run, "parse")
    assert (step.status, step.attempt, step.lost, step.owner_pid) == (
        "running", 2, 1, os.getpid())


def test_a_reused_pid_is_not_mistaken_for_the_owner(run):
    # Same pid, other start time: the owner died and the pid was given to this process.
    execution.gate(run_id=run.id, key="parse", task="step")
    StepRun.objects.filter(run_id=run.id, key="parse").update(owner_started=1.0)

    gate = execution.gate(run_id=run.id, key="parse", task="step")

    assert gate.action is Action.RUN
    assert row(run, "parse").attempt == 2


def test_another_hosts_step_is_taken_over_only_after_its_heartbeat_times_out(run):
    execution.gate(run_id=run.id, key="parse", task="step")
    StepRun.objects.filter(run_id=run.id, key="parse").update(owner_host="elsewhere",
                                                              owner_pid=1)

    live = execution.gate(run_id=run.id, key="parse", task="step")
    assert (live.action, live.reason) == (Action.IGNORE, "running elsewhere")

    StepRun.objects.filter(run_id=run.id, key="parse").update(
        heartbeat_at=timezone.now() - timedelta(seconds=61))
    stale = execution.gate(run_id=run.id, key="parse", task="step")
    assert stale.action is Action.RUN
    assert (row(run, "parse").attempt, row(run, "parse").owner_host) == (2, socket.gethostname())


def test_a_step_that_lost_its_worker_too_often_fails_the_run(run, settings):
    settings.FLOWOPS_MAX_STEP_ATTEMPTS = 3
    execution.gate(run_id=run.id, key="parse", task="step")
    StepRun.objects.filter(run_id=run.id, key="parse").update(owner_pid=dead_pid(), lost=2,
                                                              attempt=3)

    gate = execution.gate(run_id=run.id, key="parse", task="step")

    assert (gate.action, gate.reason) == (Action.IGNORE, "worker lost 3 times in step parse")
    step = row(run, "parse")
    assert (step.status, step.attempt) == ("failed", 3)
    assert step.error == {"type": "WorkerLost", "message": "worker lost 3 times in step parse",
                          "traceback": ""}
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    assert run.error == {"step_key": "parse", "type": "WorkerLost",
                         "message": "worker lost 3 times in step parse"}


def test_only_the_attempt_holding_the_claim_may_checkpoint(run, flow):
    first = execution.gate(run_id=run.id, key="parse", task="step")
    StepRun.objects.filter(run_id=run.id, key="parse").update(owner_pid=dead_pid())
    second = execution.gate(run_id=run.id, key="parse", task="step")
    assert (first.step.attempt, second.step.attempt) == (1, 2)

    with pytest.raises(ClaimLost):
        execution.checkpoint(first.step, output=99, context={})

    step = row(run, "parse")
    assert (step.status, step.output) == ("running", None)
    assert execution.step_execute(second) == "done"
    assert (row(run, "parse").status, row(run, "parse").output) == ("succeeded", 21)


def test_a_stale_attempt_cannot_journal_an_effect(run):
    first = execution.gate(run_id=run.id, key="parse", task="step")
    StepRun.objects.filter(run_id=run.id, key="parse").update(owner_pid=dead_pid())
    execution.gate(run_id=run.id, key="parse", task="step")
    journal = DatabaseJournal(run_id=run.id, scope="parse", step_id=first.step.id,
                              attempt=first.step.attempt)
    sent = []

    with pytest.raises(ClaimLost):
        journal.call("send", lambda: sent.append(1), (), {}, effect=True, returns=None)

    assert sent == []
    assert JournalEntry.objects.count() == 0


def test_a_claim_lost_by_the_database_cannot_be_checkpointed_by_its_first_owner(run):
    # given a claim the database lost (its commit does not wait for the disk), and the
    # step claimed again by another process with the same attempt number
    gate = execution.gate(run_id=run.id, key="parse", task="step")
    StepRun.objects.filter(id=gate.step.id).update(owner_pid=dead_pid())

    # then neither the first owner's journal entries nor its checkpoint are taken
    journal = DatabaseJournal(run_id=run.id, scope="parse", step_id=gate.step.id,
                              attempt=gate.step.attempt)
    with pytest.raises(ClaimLost):
        journal.call("read", lambda: 1, (), {}, effect=False, returns=int)
    with pytest.raises(ClaimLost):
        execution.checkpoint(gate.step, output=21, context={})
    assert (row(run, "parse").status, row(run, "parse").output) == ("running", None)


def test_the_fast_claim_reads_the_input_and_holds_only_while_the_run_runs(run, flow):
    execution.gate(run_id=run.id, key="parse", task="step")  # learns the run's version
    execution.checkpoint(row(run, "parse"), output=21, context={"n": 1})

    fast = execution.fast_gate(run_id=run.id, key="double", task="step")

    assert (fast.action, fast.step.key, fast.input) == (Action.RUN, "double", (21, {"n": 1}))
    Run.objects.filter(pk=run.id).update(status=Run.Status.CANCELLED)
    assert execution.fast_gate(run_id=run.id, key="fan/a/double", task="step") is None
    assert row(run, "fan/a/double").status == "pending"
