"""The production clock: one django-celery-beat ``PeriodicTask`` per active schedule trigger.

Registration calls ``schedule_tasks_sync`` in its transaction, so beat's table always
matches the active triggers: beat (``--scheduler django_celery_beat.schedulers:
DatabaseScheduler``) sends ``flowops.schedule_tick(trigger_id)`` at each cron time, and
the tick decides what runs (``services.schedule_tick``). The rows exist in the embedded
default too; nothing reads them there.
"""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

from django_celery_beat.models import CrontabSchedule, PeriodicTask

from apps.workflows.models import Trigger, Workflow

TICK_TASK = "flowops.schedule_tick"


def periodic_task_name(trigger_id: int) -> str:
    return f"flowops-schedule-{trigger_id}"


def schedule_tasks_sync(workflow: Workflow) -> None:
    """A PeriodicTask per active schedule trigger of the workflow; none for the others."""
    triggers = Trigger.objects.filter(workflow=workflow, integration=Trigger.Integration.SCHEDULE)
    for trigger in triggers.filter(active=True):
        _upsert(trigger)
    gone = [periodic_task_name(t) for t in triggers.filter(active=False)
            .values_list("id", flat=True)]
    schedule_tasks_remove(gone)


def schedule_tasks_remove(names: list[str]) -> None:
    # One by one: PeriodicTask.delete tells beat that its table changed.
    for task in PeriodicTask.objects.filter(name__in=names):
        task.delete()


def _upsert(trigger: Trigger) -> None:
    crontab = _crontab(trigger.options["cron"], trigger.options.get("timezone"))
    name = periodic_task_name(trigger.id)
    task = PeriodicTask.objects.filter(name=name).first() or PeriodicTask(name=name)
    wanted = {"task": TICK_TASK, "args": json.dumps([trigger.id]), "crontab": crontab,
              "interval": None, "solar": None, "clocked": None, "enabled": True,
              "description": f"@trigger on line {trigger.line} of {trigger.workflow.slug} "
                             f"({trigger.options['cron']})"}
    if task.pk is None or any(getattr(task, field) != value for field, value in wanted.items()):
        for field, value in wanted.items():
            setattr(task, field, value)
        task.save()  # only when it changed: saving makes beat reload its schedule


def _crontab(cron: str, tz: str | None) -> CrontabSchedule:
    minute, hour, day_of_month, month, day_of_week = cron.split()
    fields = {"minute": minute, "hour": hour, "day_of_month": day_of_month,
              "month_of_year": month, "day_of_week": day_of_week,
              "timezone": ZoneInfo(tz or "UTC")}
    # filter().first(): the admin may have made identical rows, get_or_create would fail.
    return (CrontabSchedule.objects.filter(**fields).first()
            or CrontabSchedule.objects.create(**fields))
