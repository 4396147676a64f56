"""event_accept: one event per idempotency key, its runs queued after commit."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from apps.runs.models import Run
from apps.workflows.models import Event
from apps.workflows.services.events import Target, body_sha256, event_accept, triggers_active
from apps.workflows.services.registry import workflow_register
from flowops.context import envelope
from tests.integration.helpers import wait_for_run

pytestmark = pytest.mark.django_db(transaction=True)

HOOK = '''
from flowops import trigger

@trigger(integration="webhook")
def run(context):
    return {"echo": context.payload}
'''


def accept(key: str, payload) -> object:
    [trigger] = triggers_active("webhook")
    return event_accept(
        source="test", key=key, body_hash=body_sha256(repr(payload).encode()),
        data={"payload": payload},
        targets=[Target(version=trigger.version, trigger=trigger,
                        event_data=envelope(integration="webhook", event=trigger.event,
                                            trigger_id=trigger.id, payload=payload))])


def wait_until_ended(run_id: str) -> Run:
    return wait_for_run(run_id, statuses=set(Run.TERMINAL))


def test_an_event_starts_a_run_in_the_background_and_a_repeat_starts_nothing(write_script):
    workflow_register(write_script(HOOK, "hook.py"))

    first = accept("k1", {"n": 1})
    again = accept("k1", {"n": 1})

    assert not first.duplicate and again.duplicate
    assert [r.id for r in again.runs] == [r.id for r in first.runs]
    [run] = first.runs
    assert run.event_id == first.event.id and run.trigger is not None
    assert run.driver == "embedded"
    assert run.output is None  # not driven in this (the request's) thread
    assert wait_until_ended(run.id).output == {"echo": {"n": 1}}
    assert Event.objects.get().status == Event.Status.STARTED


def test_an_event_no_trigger_wants_is_stored_as_ignored():
    done = event_accept(source="test", key="nobody", body_hash="0" * 64, data={}, targets=[])

    assert done.runs == [] and done.event.status == Event.Status.IGNORED
    assert not Run.objects.exists()


def test_concurrent_deliveries_of_one_event_start_one_run(write_script):
    workflow_register(write_script(HOOK, "hook.py"))
    together = threading.Barrier(4)
    results = []

    def deliver() -> None:
        try:
            together.wait()
            results.append(accept("same", {"n": 2}))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(r.duplicate for r in results) == [False, True, True, True]
    assert Run.objects.count() == 1 and Event.objects.count() == 1
    wait_until_ended(Run.objects.get().id)
