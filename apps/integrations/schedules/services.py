"""Schedules: a ``@trigger(integration="schedule")`` tick becomes a run, once per time.

Whoever calls ``schedule_tick`` (beat's ``flowops.schedule_tick`` task in production,
``serve``'s ticker thread in the embedded default) calls it whenever it likes: the tick
works out the latest due time itself, so a late, repeated or concurrent call starts at
most one run per scheduled time and a long downtime starts one run, never one per missed
time. The event key is (trigger, scheduled time), so a repeat is a duplicate event.

Cron fields follow Celery's ``crontab`` (the one beat uses): the day of the month AND the
day of the week must both match. Times are wall-clock times in the trigger's zone (default
UTC); a time that a DST change skips fires at the instant the clock jumps over it, a time
that it repeats fires once, at its first occurrence.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import transaction
from django.utils import timezone

from apps.integrations.schedules.beat import periodic_task_name, schedule_tasks_remove
from apps.runs.models import Run
from apps.workflows.models import Trigger
from apps.workflows.services.events import Accepted, Target, event_accept
from flowops.context import envelope

log = logging.getLogger("flowops.schedules")

# Without a lower bound, how far back a due time is looked for (a cron such as
# "0 0 29 2 1", Feb 29 on a Monday, fires years apart).
LOOKBACK_DAYS = 366 * 30


@dataclass(frozen=True)
class Cron:
    """A parsed 5-field cron expression: the sets of values each field allows."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0 is Sunday, as in cron and Celery

    @classmethod
    def parse(cls, expression: str) -> Cron:
        from celery.schedules import crontab

        minute, hour, day_of_month, month, day_of_week = expression.split()
        parsed = crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                         month_of_year=month, day_of_week=day_of_week)
        return cls(frozenset(parsed.minute), frozenset(parsed.hour),
                   frozenset(parsed.day_of_month), frozenset(parsed.month_of_year),
                   frozenset(parsed.day_of_week))

    def fires_on(self, day: date) -> bool:
        return (day.month in self.months and day.day in self.days_of_month
                and day.isoweekday() % 7 in self.days_of_week)

    def times_on(self, day: date, zone: ZoneInfo) -> list[datetime]:
        """The instants (UTC) of the day's fire times in ``zone``."""
        return [datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                .astimezone(UTC) for hour in self.hours for minute in self.minutes]


def latest_due_time(*, cron: str, tz: str | None = None, now: datetime,
                    not_before: datetime | None = None) -> datetime | None:
    """The most recent fire time of ``cron`` in zone ``tz`` that is <= ``now`` (and >=
    ``not_before``), as an aware UTC datetime; None if there is none.

    >>> latest_due_time(cron="0 9 * * *", tz="Europe/Paris",
    ...                 now=datetime(2026, 7, 1, 8, 30, tzinfo=UTC))
    datetime.datetime(2026, 7, 1, 7, 0, tzinfo=datetime.timezone.utc)
    """
    parsed, zone = Cron.parse(cron), ZoneInfo(tz or "UTC")
    low = not_before or now - timedelta(days=LOOKBACK_DAYS)
    first_day = low.astimezone(zone).date() - timedelta(days=1)
    day = now.astimezone(zone).date() + timedelta(days=1)
    best: datetime | None = None
    found_on: date | None = None
    while day >= first_day:
        if parsed.fires_on(day):
            due = [t for t in parsed.times_on(day, zone) if low <= t <= now]
            if due and (best is None or max(due) > best):
                best = max(due)
                found_on = found_on or day
        # One day more than the first hit: where a zone changes offset at midnight, the
        # previous day's last time can be later than this day's first.
        if found_on is not None and day < found_on:
            break
        day -= timedelta(days=1)
    return best


def trigger_due_time(trigger: Trigger, now: datetime) -> datetime | None:
    """The trigger's latest due time, never one from before it was activated."""
    return latest_due_time(cron=trigger.options["cron"], tz=trigger.options.get("timezone"),
                           now=now, not_before=trigger.active_since)


def schedule_tick(trigger_id: int, now: datetime | None = None) -> Accepted | None:
    """Start the schedule trigger's run for its latest due time, unless that time (or a
    later one) was handled already; None when there is nothing to do.

    While an earlier run of the trigger is unfinished the time is skipped: stored as an
    ignored event that says why, so it shows, and it is not tried again.
    """
    now = now or timezone.now()
    # Most ticks find nothing new: find out without a lock (and, on SQLite, without the
    # write lock every transaction takes there).
    trigger = Trigger.objects.filter(pk=trigger_id).first()
    if trigger is None:  # its workflow was deleted: beat should stop asking
        schedule_tasks_remove([periodic_task_name(trigger_id)])
        return None
    if _new_due_time(trigger, now) is None:
        return None
    # The row lock orders concurrent ticks of one trigger: the second one sees the time
    # the first recorded and does nothing (the event key would refuse it anyway).
    with transaction.atomic():
        trigger = (Trigger.objects.select_for_update().select_related("version", "workflow")
                   .filter(pk=trigger_id).first())
        due = None if trigger is None else _new_due_time(trigger, now)
        if due is None:
            return None
        trigger.last_scheduled_for = due
        trigger.save(update_fields=["last_scheduled_for"])
        return _accept(trigger, due)


def _new_due_time(trigger: Trigger, now: datetime) -> datetime | None:
    """The trigger's latest due time if it fires and that time was not handled yet."""
    if trigger.integration != Trigger.Integration.SCHEDULE or not trigger.active:
        return None  # an old version's trigger never fires
    due = trigger_due_time(trigger, now)
    if due is None or (trigger.last_scheduled_for and due <= trigger.last_scheduled_for):
        return None
    return due


def _accept(trigger: Trigger, due: datetime) -> Accepted:
    zone = ZoneInfo(trigger.options.get("timezone") or "UTC")
    scheduled_for = due.astimezone(zone).isoformat()
    data = envelope(integration="schedule", event="tick", trigger_id=trigger.id,
                    scheduled_for=scheduled_for)
    busy = (Run.objects.filter(trigger__in=_same_schedule(trigger))
            .exclude(status__in=Run.TERMINAL).values_list("id", "status").first())
    targets = [] if busy else [Target(version=trigger.version, trigger=trigger,
                                      event_data=data)]
    detail = f"skipped: run {busy[0]} of this schedule is still {busy[1]}" if busy else ""
    accepted = event_accept(
        source="schedule", key=f"{trigger.id}:{scheduled_for}", body_hash=_sha256(data),
        data=data, targets=targets, workflow=trigger.workflow, detail=detail)
    if busy:
        log.info("schedule %s at %s %s", trigger, scheduled_for, detail)
    return accepted


def _same_schedule(trigger: Trigger):
    """This trigger and those of the workflow's other versions with the same schedule: a
    run started before a new version was registered still holds back the next tick."""
    return Trigger.objects.filter(workflow_id=trigger.workflow_id,
                                  integration=trigger.integration, options=trigger.options)


def _sha256(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
