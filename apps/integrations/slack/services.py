"""Slack's Events API: a signed ``event_callback`` starts the matching slack-triggered runs.

A delivery is checked (signature and timestamp with slack-sdk's ``SignatureVerifier``,
then the JSON envelope) before anything is stored. What is stored:

* the event under (``slack``, ``event_id``) with the runs it starts, one transaction
  (``event_accept``): a retry of a stored event starts nothing, a retry of a delivery that
  failed before commit is processed in full. Dedupe is on ``event_id`` only;
* per workflow that gets a run, a claim (``slack-message``, ``<workflow>:<channel>:<ts>``)
  in the same transaction. When the bot is mentioned in a channel it listens to, Slack
  sends the one message twice, as ``message`` and as ``app_mention`` with different
  ``event_id``s; the claim gives a workflow that listens to both one run, not two.

Not stored at all: the bot's own messages (and other bots'), message subtypes (edits,
joins, deletions...) and event types no trigger can listen to. Slack sends every message
of every channel the bot is in, its own replies included; writing a row for each would
double the writes and record nothing anyone acts on. A handled event that no trigger
matches is stored as ``ignored``, so "why did my workflow not start?" has an answer.

Matching asks Slack for the bot's user id and the channel names (cached per process)
with a short timeout: when Slack does not answer, the delivery is refused with 503 and
nothing stored, and Slack's retry is processed in full.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from apps.integrations.hooks import json_object
from apps.integrations.slack import client
from apps.integrations.slack.signing import SlackRequestError, verify_request
from apps.workflows.models import Event, Trigger
from apps.workflows.services.events import (
    Accepted,
    Target,
    body_sha256,
    event_accept,
    event_found,
    triggers_active,
)
from flowops.context import envelope
from flowops.exceptions import SlackError

log = logging.getLogger("flowops.slack")

SOURCE = "slack"
MESSAGE_SOURCE = "slack-message"
HANDLED = ("message", "app_mention")


@dataclass
class Received:
    """What a delivery came to: a challenge answered, an event accepted, or ignored."""

    challenge: str | None = None
    accepted: Accepted | None = None
    ignored: str | None = None


def slack_event_receive(*, body: bytes, timestamp: str | None,
                        signature: str | None) -> Received:
    """Verify a delivery of the Events API and start the runs its event matches."""
    verify_request(body=body, timestamp=timestamp, signature=signature)
    payload = json_object(body)
    kind = payload.get("type")
    if kind == "url_verification":
        return Received(challenge=_challenge(payload))
    if kind == "app_rate_limited":
        log.warning("Slack is rate-limiting this app's events: %s", payload)
        return Received(ignored="app_rate_limited")
    if kind != "event_callback":
        raise SlackRequestError(400, f"type must be event_callback or url_verification, "
                                   f"not {kind!r}")
    return _event_callback(payload, body)


def _event_callback(payload: dict[str, Any], body: bytes) -> Received:
    event_id, event = _event_of(payload)
    reason = ignore_reason(event)
    if reason:
        return Received(ignored=reason)
    message = _message(event, payload)
    stored = event_found(SOURCE, event_id)
    if stored is not None:  # a retry: answered before asking Slack anything
        return Received(accepted=stored)
    # Slack is asked before the transaction: no database transaction waits on the network.
    with client.quick():
        try:
            if message["user"] and message["user"] == client.bot_user_id():
                return Received(ignored="the bot's own message")
            triggers = _matching(event["type"], message)
        except SlackError as exc:
            raise SlackRequestError(503, f"{exc}; Slack will retry the event") from None
    return Received(accepted=_accept(event_id, event["type"], message, triggers, body))


def ignore_reason(event: dict[str, Any]) -> str | None:
    """Why an event starts nothing and is not stored, or None when it may start runs."""
    kind = event.get("type")
    if kind not in HANDLED:
        return f"event type {kind!r} is not handled"
    if event.get("subtype"):
        return f"message subtype {event['subtype']!r} is not handled"
    if event.get("bot_id"):
        return "a bot's message"
    return None


def _challenge(payload: dict[str, Any]) -> str:
    challenge = payload.get("challenge")
    if not isinstance(challenge, str) or not challenge:
        raise SlackRequestError(400, "url_verification without a challenge")
    return challenge


def _event_of(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    event_id = payload.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        raise SlackRequestError(400, "event_callback without an event_id")
    event = payload.get("event")
    if not isinstance(event, dict):
        raise SlackRequestError(400, "event_callback without an event object")
    return event_id, event


def _message(event: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    for name in ("channel", "ts"):
        if not isinstance(event.get(name), str) or not event[name]:
            raise SlackRequestError(400, f"{event.get('type')} event without a {name}")
    return {"text": event.get("text") or "", "user": event.get("user"),
            "channel": event["channel"], "ts": event["ts"],
            "thread_ts": event.get("thread_ts"),
            "team": event.get("team") or payload.get("team_id")}


def _accept(event_id: str, kind: str, message: dict[str, Any], triggers: list[Trigger],
            body: bytes) -> Accepted:
    with transaction.atomic():
        targets = [_target(t, kind, message) for t in triggers
                   if _claim(t, message, event_id, body)]
        return event_accept(source=SOURCE, key=event_id, body_hash=body_sha256(body),
                            data={"event": kind, "message": message}, targets=targets)


def _matching(kind: str, message: dict[str, Any]) -> list[Trigger]:
    """The active triggers of this event, one per workflow, in a fixed (lock) order."""
    found: dict[int, Trigger] = {}
    for trigger in triggers_active(SOURCE, kind).order_by("workflow_id", "id"):
        channel = trigger.options.get("channel")
        if trigger.workflow_id in found or (
                channel and not client.channel_matches(channel, message["channel"])):
            continue
        found[trigger.workflow_id] = trigger
    return list(found.values())


def _claim(trigger: Trigger, message: dict[str, Any], event_id: str, body: bytes) -> bool:
    """Whether this event is the first to start this workflow for this message."""
    _, created = Event.objects.get_or_create(
        source=MESSAGE_SOURCE,
        key=f"{trigger.workflow_id}:{message['channel']}:{message['ts']}",
        defaults={"body_sha256": body_sha256(body), "workflow_id": trigger.workflow_id,
                  "data": {"event_id": event_id}, "status": Event.Status.STARTED,
                  "detail": f"a claim, not a delivery: one run per workflow and Slack "
                            f"message; the run is on event slack:{event_id}"})
    return created


def _target(trigger: Trigger, kind: str, message: dict[str, Any]) -> Target:
    return Target(version=trigger.version, trigger=trigger, event_data=envelope(
        integration="slack", event=kind, trigger_id=trigger.id, message=message))
