"""Schedules: one run per scheduled time, no catch-up, skipped while the last one runs."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django_celery_beat.models import PeriodicTask

from apps.integrations.schedules.beat import periodic_task_name
from apps.integrations.schedules.services import latest_due_time, schedule_tick
from apps.integrations.schedules.ticker import Ticker
from apps.runs.models import Run
from apps.runs.services.runs import run_cancel, run_create
from apps.workflows.models import Event, Trigger, Workflow
from apps.workflows.services.registry import workflow_register
from apps.workflows.services.versions import load_version
from flowops.context import envelope
from flowops.exceptions import ScriptError
from tests.integration.helpers import wait_for_run, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

DAILY = '''
from flowops import trigger

@trigger(integration="schedule", options={"cron": "0 9 * * *", "timezone": "Europe/Paris"})
def run(context):
    return {"scheduled_for": context.trigger.scheduled_for, "via": context.trigger.integration}
'''
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)
# 09:00 in Paris on 1 July 2026 (summer time, UTC+2), and a moment after it.
NINE_JULY_1 = datetime(2026, 7, 1, 7, 0, tzinfo=UTC)
AFTER_NINE_JULY_1 = datetime(2026, 7, 1, 7, 0, 30, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(("cron", "tz", "now", "not_before", "due"), [
    ("0 * * * *", None, utc(2026, 7, 1, 10, 59, 59), None, utc(2026, 7, 1, 10)),
    ("0 * * * *", None, utc(2026, 7, 1, 10), None, utc(2026, 7, 1, 10)),  # due == now
    ("*/15 * * * *", None, utc(2026, 7, 1, 0, 7), None, utc(2026, 7, 1, 0, 0)),
    ("0 23 * * *", None, utc(2026, 7, 1, 0, 7), None, utc(2026, 6, 30, 23)),
    # 09:00 in Paris is 07:00 UTC in summer, 08:00 UTC in winter.
    ("0 9 * * *", "Europe/Paris", utc(2026, 7, 1, 8), None, utc(2026, 7, 1, 7)),
    ("0 9 * * *", "Europe/Paris", utc(2026, 12, 1, 7, 59), None, utc(2026, 11, 30, 8)),
    ("0 9 * * *", "America/New_York", utc(2026, 7, 1, 12), None, utc(2026, 6, 30, 13)),
    # Weekdays only: on Sunday 5 July the latest is Friday 3 July.
    ("0 9 * * 1-5", None, utc(2026, 7, 5, 12), None, utc(2026, 7, 3, 9)),
    # Celery's crontab: day of month AND day of week (Friday the 13th).
    ("0 0 13 * 5", None, utc(2026, 12, 5), None, utc(2026, 11, 13)),
    # Paris springs forward on 29 March 2026 at 02:00 -> 03:00: 02:30 does not exist and
    # fires when the clock jumps over it (01:00 UTC), not before.
    ("30 2 * * *", "Europe/Paris", utc(2026, 3, 29, 0, 59), None, utc(2026, 3, 28, 1, 30)),
    ("30 2 * * *", "Europe/Paris", utc(2026, 3, 29, 1, 45), None, utc(2026, 3, 29, 1, 30)),
    # Paris falls back on 25 October 2026 at 03:00 -> 02:00: 02:30 happens twice and is
    # due once, at its first occurrence (00:30 UTC), still after the second (01:30 UTC).
    ("30 2 * * *", "Europe/Paris", utc(2026, 10, 25, 0, 45), None, utc(2026, 10, 25, 0, 30)),
    ("30 2 * * *", "Europe/Paris", utc(2026, 10, 25, 1, 45), None, utc(2026, 10, 25, 0, 30)),
    # Nothing due since ``not_before`` (a trigger registered after the last due time).
    ("0 9 * * *", None, utc(2026, 7, 1, 12), utc(2026, 7, 1, 9, 0, 1), None),
    ("0 9 * * *", None, utc(2026, 7, 2, 12), utc(2026, 7, 1, 9, 0, 1), utc(2026, 7, 2, 9)),
])
def test_latest_due_time(cron, tz, now, not_before, due):
    assert latest_due_time(cron=cron, tz=tz, now=now, not_before=not_before) == due


@pytest.fixture
def daily(write_script) -> Trigger:
    """The daily 09:00 Paris trigger, active since long before the times the tests use."""
    [trigger] = workflow_register(write_script(DAILY, "daily.py")).triggers
    Trigger.objects.filter(pk=trigger.pk).update(active_since=LONG_AGO)
    trigger.refresh_from_db()
    return trigger


def finished(accepted) -> Run:
    [run] = accepted.runs
    return wait_for_run(run.id, statuses=set(Run.TERMINAL))


def test_a_tick_starts_a_run_for_the_due_time_and_tells_the_script_when(daily):
    accepted = schedule_tick(daily.id, now=AFTER_NINE_JULY_1)

    run = finished(accepted)
    assert run.output == {"scheduled_for": "2026-07-01T09:00:00+02:00", "via": "schedule"}
    assert (run.trigger_id, run.event_id) == (daily.id, accepted.event.id)
    event = Event.objects.get()
    assert (event.source, event.key, event.status) == (
        "schedule", f"{daily.id}:2026-07-01T09:00:00+02:00", Event.Status.STARTED)
    assert event.data["trigger"] == {"integration": "schedule", "event": "tick",
                                     "id": daily.id,
                                     "scheduled_for": "2026-07-01T09:00:00+02:00"}
    daily.refresh_from_db()
    assert daily.last_scheduled_for == NINE_JULY_1


def test_ticking_again_for_the_same_time_starts_nothing(daily):
    first = schedule_tick(daily.id, now=NINE_JULY_1)
    finished(first)

    again = schedule_tick(daily.id, now=NINE_JULY_1)
    later_same_slot = schedule_tick(daily.id, now=NINE_JULY_1 + timedelta(hours=5))

    assert (again, later_same_slot) == (None, None)
    assert Run.objects.count() == 1 and Event.objects.count() == 1


def test_concurrent_ticks_start_one_run(daily):
    barrier = threading.Barrier(4)
    results = []

    def tick():
        try:
            barrier.wait()
            results.append(schedule_tick(daily.id, now=AFTER_NINE_JULY_1))
        finally:
            connection.close()

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    started = [r for r in results if r is not None]
    assert len(results) == 4 and len(started) == 1
    finished(started[0])
    assert Run.objects.count() == 1 and Event.objects.count() == 1


def test_after_a_long_gap_only_the_latest_due_time_runs_once(daily):
    finished(schedule_tick(daily.id, now=AFTER_NINE_JULY_1))

    # Thirty days without a tick (the server was down): one run, for 30 July.
    accepted = schedule_tick(daily.id, now=AFTER_NINE_JULY_1 + timedelta(days=29, hours=3))

    run = finished(accepted)
    assert run.output["scheduled_for"] == "2026-07-30T09:00:00+02:00"
    assert Run.objects.count() == 2
    assert sorted(Event.objects.values_list("key", flat=True)) == [
        f"{daily.id}:2026-07-01T09:00:00+02:00", f"{daily.id}:2026-07-30T09:00:00+02:00"]


def test_a_tick_is_skipped_and_recorded_while_the_previous_run_is_unfinished(daily):
    # given a run of the trigger that has not finished (created, not started yet)
    unfinished = run_create(version=daily.version, loaded=load_version(daily.version),
                            event_data=envelope(integration="schedule", event="tick",
                                                trigger_id=daily.id),
                            trigger=daily)

    # when its next time comes
    skipped = schedule_tick(daily.id, now=AFTER_NINE_JULY_1)

    # then no run starts; the event says why, and that time is not tried again
    assert skipped.runs == []
    assert (skipped.event.status, skipped.event.detail) == (
        Event.Status.IGNORED, f"skipped: run {unfinished.id} of this schedule is still pending")
    assert Run.objects.count() == 1
    run_cancel(run_id=unfinished.id)
    assert schedule_tick(daily.id, now=AFTER_NINE_JULY_1) is None

    # the next time after the run ended starts a run
    run = finished(schedule_tick(daily.id, now=AFTER_NINE_JULY_1 + timedelta(days=1)))
    assert run.output["scheduled_for"] == "2026-07-02T09:00:00+02:00"


def test_a_run_of_an_earlier_version_holds_back_the_same_schedule_of_a_new_one(
        daily, write_script):
    unfinished = run_create(version=daily.version, loaded=load_version(daily.version),
                            event_data=envelope(integration="schedule", event="tick",
                                                trigger_id=daily.id),
                            trigger=daily)
    [new] = workflow_register(write_script(DAILY + "\n# v2\n", "daily.py")).triggers
    Trigger.objects.filter(pk=new.pk).update(active_since=LONG_AGO)
    assert new.id != daily.id

    skipped = schedule_tick(new.id, now=AFTER_NINE_JULY_1)

    assert skipped.runs == []
    assert skipped.event.detail == (f"skipped: run {unfinished.id} of this schedule is "
                                    "still pending")


def test_a_trigger_does_not_fire_for_times_before_it_was_registered(daily):
    Trigger.objects.filter(pk=daily.pk).update(active_since=NINE_JULY_1 + timedelta(hours=1))

    assert schedule_tick(daily.id, now=NINE_JULY_1 + timedelta(hours=5)) is None
    assert not Event.objects.exists()

    run = finished(schedule_tick(daily.id, now=NINE_JULY_1 + timedelta(days=1)))
    assert run.output["scheduled_for"] == "2026-07-02T09:00:00+02:00"


def test_registering_the_same_source_again_keeps_the_schedule_state(daily, write_script):
    finished(schedule_tick(daily.id, now=AFTER_NINE_JULY_1))

    [again] = workflow_register(write_script(DAILY, "daily.py")).triggers

    assert again.id == daily.id
    assert (again.active_since, again.last_scheduled_for) == (LONG_AGO, NINE_JULY_1)


def test_an_inactive_trigger_never_fires(daily, write_script):
    workflow_register(write_script(DAILY.replace("0 9 * * *", "0 10 * * *"), "daily.py"))

    assert schedule_tick(daily.id, now=AFTER_NINE_JULY_1) is None
    assert not Event.objects.exists() and not Run.objects.exists()


def test_a_periodic_task_follows_the_active_schedule_triggers(write_script):
    [first] = workflow_register(write_script(DAILY, "daily.py")).triggers

    task = PeriodicTask.objects.get(name=periodic_task_name(first.id))
    assert (task.task, task.args, task.enabled) == ("flowops.schedule_tick", f"[{first.id}]",
                                                    True)
    crontab = task.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_month, crontab.month_of_year,
            crontab.day_of_week, str(crontab.timezone)) == ("0", "9", "*", "*", "*",
                                                            "Europe/Paris")

    # A new cron is a new trigger: its task replaces the old one.
    [second] = workflow_register(write_script(
        DAILY.replace("0 9 * * *", "*/5 * * * 1-5"), "daily.py")).triggers
    assert list(PeriodicTask.objects.filter(task="flowops.schedule_tick")
                .values_list("name", "crontab__minute", "crontab__day_of_week")) == [
        (periodic_task_name(second.id), "*/5", "1-5")]

    # No schedule left: no task.
    workflow_register(write_script(DAILY.replace(
        '"schedule", options={"cron": "0 9 * * *", "timezone": "Europe/Paris"}', '"webhook"'),
        "daily.py"))
    assert not PeriodicTask.objects.filter(task="flowops.schedule_tick").exists()


def test_a_tick_of_a_deleted_trigger_removes_its_periodic_task(daily):
    Workflow.objects.all().delete()

    assert schedule_tick(daily.id, now=AFTER_NINE_JULY_1) is None
    assert not PeriodicTask.objects.filter(name=periodic_task_name(daily.id)).exists()


@pytest.mark.parametrize(("options", "message"), [
    ('{"cron": "61 * * * *"}', "option 'cron' is not a valid cron expression"),
    ('{"cron": "0 9 * *"}', "option 'cron' must be a cron expression of 5 fields"),
    ('{"cron": "0 9 * * *", "timezone": "Mars/Base"}',
     "option 'timezone' 'Mars/Base' is not a known IANA time zone"),
])
def test_bad_schedule_options_are_refused_at_registration_with_file_and_line(
        write_script, options, message):
    path = write_script("from flowops import trigger\n\n"
                        f'@trigger(integration="schedule", options={options})\n'
                        "def run(context):\n    pass\n", "bad.py")

    with pytest.raises(ScriptError) as caught:
        workflow_register(path)

    assert (caught.value.path, caught.value.line) == (str(path), 3)
    assert message in str(caught.value)
    assert not Workflow.objects.exists() and not PeriodicTask.objects.exists()


def test_the_ticker_ticks_every_active_schedule_trigger_once_per_time(daily, write_script):
    [hourly] = workflow_register(write_script(
        DAILY.replace("0 9 * * *", "0 * * * *"), "hourly.py")).triggers
    Trigger.objects.filter(pk=hourly.pk).update(active_since=LONG_AGO)
    ticker = Ticker(interval=60)

    first = ticker.tick(now=AFTER_NINE_JULY_1)
    second = ticker.tick(now=AFTER_NINE_JULY_1)

    assert sorted(a.event.key for a in first) == [
        f"{daily.id}:2026-07-01T09:00:00+02:00", f"{hourly.id}:2026-07-01T09:00:00+02:00"]
    assert second == []
    for accepted in first:
        finished(accepted)


def test_the_ticker_thread_starts_due_runs_until_stopped(write_script):
    [every_minute] = workflow_register(write_script(
        DAILY.replace("0 9 * * *", "* * * * *"), "minutely.py")).triggers
    Trigger.objects.filter(pk=every_minute.pk).update(active_since=LONG_AGO)

    ticker = Ticker(interval=0.05).start()
    try:
        run = wait_until(lambda: Run.objects.filter(trigger=every_minute).first(),
                         "the ticker to start a run")
    finally:
        ticker.stop()

    done = wait_for_run(run.id, statuses=set(Run.TERMINAL))
    assert done.status == Run.Status.SUCCEEDED
    # A minute may have turned meanwhile: let any later run end before the tables go.
    wait_until(lambda: not Run.objects.exclude(status__in=Run.TERMINAL).exists(),
               "every run to end")
