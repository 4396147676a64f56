"""Beat's ``flowops.schedule_tick`` through the broker: one run per time, on a real worker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.runs.models import Run
from apps.workflows.models import Event, Trigger
from apps.workflows.services.registry import workflow_register
from tests.integration.helpers import describe, wait_for_run
from workers.orchestrator import schedule_tick_task

pytestmark = pytest.mark.integration

# Once a year, so both deliveries below see the same due time (1 January, 00:00 UTC).
YEARLY = """
from flowops import trigger


@trigger(integration="schedule", options={"cron": "0 0 1 1 *"})
def run(context):
    record("tick")
    return context.trigger.scheduled_for
"""
RESULT_TIMEOUT_S = 60


def test_two_ticks_through_the_broker_start_one_run_that_finishes_on_the_worker(
        worker, effects, write_flow):
    [trigger] = workflow_register(write_flow(YEARLY, "yearly.py")).triggers
    # Active since long before this year's due time (registration itself would be after).
    Trigger.objects.filter(pk=trigger.pk).update(
        active_since=timezone.now() - timedelta(days=800))

    # Beat's message, delivered twice (a duplicate, or a second beat by mistake).
    first, second = schedule_tick_task.delay(trigger.id), schedule_tick_task.delay(trigger.id)
    started = first.get(timeout=RESULT_TIMEOUT_S) + second.get(timeout=RESULT_TIMEOUT_S)

    assert len(started) == 1, started
    run = wait_for_run(started[0], statuses=set(Run.TERMINAL))
    event = Event.objects.get(source="schedule")
    assert (run.status, run.trigger_id, run.event_id) == ("succeeded", trigger.id, event.id), \
        describe(run.id)
    assert run.output == event.data["trigger"]["scheduled_for"]
    assert event.key == f"{trigger.id}:{run.output}"
    assert effects.count("tick") == 1
    assert Run.objects.count() == 1
