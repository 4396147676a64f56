"""flowops.start_run: child runs, and a parent that waits for one without a worker."""

from __future__ import annotations

import pytest

from apps.core.exceptions import ApplicationError
from apps.runs.models import Run
from apps.runs.services.children import parents_wake_lost
from apps.runs.services.runs import run_approve
from apps.workflows.services.registry import workflow_register
from tests.apps.runs.conftest import EMBEDDED, journal_of
from tests.integration.helpers import wait_for_run

pytestmark = EMBEDDED

CHILD = '''
import time
from flowops import step

@step
def greet(name: str) -> str:
    if name == "slow":
        time.sleep(0.5)
    if name == "bad":
        raise ValueError("no bad names")
    return f"Hello, {name}!"

pipeline = greet
'''

PARENT = '''
from flowops import activity, start_run, trigger

@activity(effect=True)
def note(text: str) -> str:
    NOTES.append(text)
    return text

NOTES = []

@trigger(integration="webhook")
def run(context):
    note("before")
    child = start_run("child", input=context.payload, wait=context.payload != "nowait")
    note(f"after {child.status}")
    return {"child": child.run_id, "output": child.output}
'''


def ended(run_id: str) -> Run:
    return wait_for_run(run_id, statuses=set(Run.TERMINAL))


@pytest.fixture
def parent(make_flow, write_script):
    workflow_register(write_script(CHILD, "child.py"))
    return make_flow(PARENT)


def test_a_parent_waits_for_its_child_and_replays_up_to_the_wait(parent):
    run = ended(parent.run("slow").id)

    child = Run.objects.get(parent=run)
    assert run.status == Run.Status.SUCCEEDED
    assert run.output == {"child": child.id, "output": "Hello, slow!"}
    assert child.status == Run.Status.SUCCEEDED
    assert parent.module.NOTES == ["before", "after succeeded"]
    assert [call for _, _, call, *_ in journal_of(run)] == ["note", "flowops.start_run",
                                                            "note"]
    assert run.waiting_on == ""


def test_without_wait_the_parent_goes_on_and_the_child_runs_linked(parent):
    run = ended(parent.run("nowait").id)

    child = ended(Run.objects.get(parent=run).id)
    assert run.output == {"child": child.id, "output": None}
    assert parent.module.NOTES == ["before", "after running"]
    assert child.output == "Hello, nowait!"


def test_a_failed_child_fails_the_waiting_parent_naming_it(parent):
    run = ended(parent.run("bad").id)

    child = Run.objects.get(parent=run)
    assert run.status == Run.Status.FAILED
    assert run.error["type"] == "StepFailed"
    assert run.error["message"] == (f"child run {child.id} (child) failed: no bad names")


def test_a_waiting_parent_is_not_an_approval_and_recovery_wakes_a_lost_one(parent):
    run = parent.create("slow")
    # Simulate a wake-up lost in a crash: the parent paused on a child that has ended.
    done = ended(parent.run("x").id)
    child = Run.objects.get(parent=done)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.PAUSED, waiting_on=child.id,
                                         paused_step_key="run")
    Run.objects.filter(pk=child.pk).update(parent=run)

    with pytest.raises(ApplicationError, match=f"waits for its child run {child.id}, not for "
                                               "an approval"):
        run_approve(run_id=run.id, input=None)
    assert parents_wake_lost() == [child.id]

    woken = Run.objects.get(pk=run.pk)
    assert woken.status in (Run.Status.RUNNING, Run.Status.SUCCEEDED, Run.Status.FAILED)
    assert woken.waiting_on == ""


def test_an_unknown_workflow_fails_the_parent_with_its_name(make_flow):
    flow = make_flow('''
        from flowops import start_run, trigger

        @trigger(integration="webhook")
        def run(context):
            return start_run("nope").run_id
    ''')

    run = flow.run()

    assert run.status == Run.Status.FAILED
    assert run.error["message"] == "start_run: no workflow 'nope'"


@pytest.mark.django_db(transaction=True)
def test_the_admin_shows_where_a_run_came_from(parent, admin_client):
    from django.urls import reverse

    run = ended(parent.run("nowait").id)
    child = ended(Run.objects.get(parent=run).id)

    page = admin_client.get(reverse("admin:runs_run_change", args=[child.id]))
    parent_page = admin_client.get(reverse("admin:runs_run_change", args=[run.id]))

    assert f"parent run <a href=\"/admin/runs/run/{run.id}/change/\">{run.id}</a>" in (
        page.content.decode())
    assert "1 child run(s)" in parent_page.content.decode()
