"""start_run(wait=True) on a real worker: the parent gives its slot back while it waits."""

from __future__ import annotations

import pytest

from apps.runs.models import Run
from apps.workflows.services.registry import workflow_register
from tests.integration.helpers import describe, start_run, wait_for_run, wait_until

pytestmark = pytest.mark.integration

CHILD = """
@step
def slow(x: int) -> int:
    record("child")
    wait_for_flag("release")
    return x * 10


pipeline = slow
"""

PARENT = """
from flowops import start_run, trigger


@activity(effect=True)
def note(text: str) -> str:
    record(text)
    return text


@trigger(integration="webhook")
def run(context):
    note("before")
    child = start_run("child", input=context.payload, wait=True)
    note("after")
    return child.output + 1
"""


def test_a_waiting_parent_holds_no_worker_and_resumes_when_the_child_ends(
        worker, effects, write_flow):
    workflow_register(write_flow(CHILD, "child.py"))
    run = start_run(write_flow(PARENT, "parent.py"), input=4)

    # The parent pauses on its child; with one pool slot taken by the child, the
    # parent's step is not running anywhere.
    paused = wait_for_run(run.id, statuses={"paused"})
    child = Run.objects.get(parent=run)
    assert paused.waiting_on == child.id, describe(run.id)
    assert paused.steps.get(key="run").status == "pending"
    wait_until(lambda: effects.counts().get("child"), "the child to start")

    effects.set_flag("release", "yes")
    done = wait_for_run(run.id, statuses={"succeeded", "failed"})

    assert (done.status, done.output) == ("succeeded", 41), describe(run.id)
    assert effects.counts() == {"before": 1, "child": 1, "after": 1}
