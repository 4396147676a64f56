"""``@trigger``: what starts a FlowOps-style script, checked where it is written.

A script declares its events on ``def run(context)``::

    @trigger(integration="slack", event="message", options={"channel": "#support"})
    def run(context):
        ...

The decorator only records and checks the declaration; registration
(``python manage.py register_workflow``) turns it into Trigger rows that incoming events
are matched against. A bad declaration raises here, at import, so the error carries the
script's file and the decorator's line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flowops.exceptions import PipelineDefinitionError


class TriggerDefinitionError(PipelineDefinitionError):
    """A ``@trigger`` names an unknown integration or event, or has bad options."""


@dataclass(frozen=True)
class TriggerSpec:
    integration: str
    event: str
    options: dict[str, Any] = field(default_factory=dict)
    line: int | None = None


def _slack_channel(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "must be a channel name like '#support' or a channel id like 'C0123ABCD'"
    return None


def _cron(value: Any) -> str | None:
    if not isinstance(value, str) or len(value.split()) != 5:
        return "must be a cron expression of 5 fields, e.g. '0 9 * * 1-5'"
    from celery.schedules import ParseException, crontab

    minute, hour, day_of_month, month, day_of_week = value.split()
    try:
        crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month,
                day_of_week=day_of_week)
    except (ParseException, ValueError) as exc:
        return f"is not a valid cron expression: {exc}"
    return None


def _timezone(value: Any) -> str | None:
    import zoneinfo

    if not isinstance(value, str):
        return "must be an IANA time zone name, e.g. 'Europe/Paris'"
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"{value!r} is not a known IANA time zone"
    return None


@dataclass(frozen=True)
class Integration:
    events: tuple[str, ...]
    options: dict[str, Callable[[Any], str | None]]
    required: tuple[str, ...] = ()


INTEGRATIONS: dict[str, Integration] = {
    "slack": Integration(events=("message", "app_mention"),
                         options={"channel": _slack_channel}),
    "webhook": Integration(events=("received",), options={}),
    "schedule": Integration(events=("tick",), options={"cron": _cron, "timezone": _timezone},
                            required=("cron",)),
}


def check(integration: Any, event: Any, options: Any) -> tuple[str, str, dict]:
    """Validate a declaration; return it with the integration's default event filled in."""
    spec = INTEGRATIONS.get(integration) if isinstance(integration, str) else None
    if spec is None:
        raise TriggerDefinitionError(
            f"@trigger: unknown integration {integration!r}; one of: "
            f"{', '.join(sorted(INTEGRATIONS))}")
    event = spec.events[0] if event is None else event
    if event not in spec.events:
        raise TriggerDefinitionError(
            f"@trigger(integration={integration!r}): unknown event {event!r}; one of: "
            f"{', '.join(spec.events)}")
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise TriggerDefinitionError(
            f"@trigger(integration={integration!r}): options must be a dict, "
            f"not {type(options).__name__}")
    for name, value in options.items():
        validator = spec.options.get(name)
        if validator is None:
            known = ", ".join(spec.options) or "none"
            raise TriggerDefinitionError(
                f"@trigger(integration={integration!r}): unknown option {name!r} "
                f"(options: {known})")
        problem = validator(value)
        if problem:
            raise TriggerDefinitionError(
                f"@trigger(integration={integration!r}): option {name!r} {problem}")
    for name in spec.required:
        if name not in options:
            raise TriggerDefinitionError(
                f"@trigger(integration={integration!r}): option {name!r} is required")
    return integration, event, dict(options)


def trigger(integration: str, event: str | None = None, *,
            options: dict[str, Any] | None = None) -> Callable[[Callable], Callable]:
    """Declare an event that starts this script's ``run(context)``; stackable."""
    import sys

    line = sys._getframe(1).f_lineno  # the decorator's line, for registration's messages
    integration, event, options = check(integration, event, options)
    spec = TriggerSpec(integration=integration, event=event, options=options, line=line)

    def wrap(fn: Callable) -> Callable:
        if not callable(fn):
            raise TriggerDefinitionError("@trigger decorates a function: def run(context)")
        fn.__flowops_triggers__ = [spec, *getattr(fn, "__flowops_triggers__", [])]
        return fn

    return wrap


def triggers_of(fn: Any) -> list[TriggerSpec]:
    """A function's triggers in the order they are written (top decorator first)."""
    return list(getattr(fn, "__flowops_triggers__", []))

