"""What a FlowOps-style script's ``run(context)`` receives.

A run of a script keeps its event in the run's input (the envelope: trigger, message,
payload); the context is rebuilt from it on every attempt, so a replayed script sees the
same event. ``config`` is read when the attempt starts: the workflow's settings from the
admin, where a value ``{"$env": "NAME"}`` is the environment variable NAME of the worker,
so secrets are never stored in the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    """A chat message that started the run (Slack)."""

    text: str = ""
    user: str | None = None
    channel: str | None = None
    ts: str | None = None
    thread_ts: str | None = None
    team: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Message | None:
        if not data:
            return None
        return cls(**{name: data.get(name) for name in cls.__dataclass_fields__
                      if data.get(name) is not None})


@dataclass(frozen=True)
class TriggerInfo:
    """Which trigger started the run: ``integration`` is slack, webhook, schedule, api..."""

    integration: str
    event: str | None = None
    id: int | None = None
    scheduled_for: str | None = None


@dataclass(frozen=True)
class Context:
    workflow_id: int | None
    workflow: str | None
    run_id: str
    trigger: TriggerInfo
    message: Message | None = None
    payload: Any = None
    config: dict[str, Any] = field(default_factory=dict)


def envelope(*, integration: str, event: str | None = None, trigger_id: int | None = None,
             message: dict | None = None, payload: Any = None,
             scheduled_for: str | None = None) -> dict[str, Any]:
    """The run input of a script run: JSON, so it is stored and replayed as is."""
    trigger = {"integration": integration, "event": event, "id": trigger_id}
    if scheduled_for is not None:
        trigger["scheduled_for"] = scheduled_for
    return {"trigger": trigger, "message": message, "payload": payload}
