"""``POST /hooks/slack/interactions``: Slack's button clicks on approval requests.

Slack posts ``application/x-www-form-urlencoded`` with one field, ``payload`` (JSON),
signed with the app's signing secret. Bad requests answer a status with
``{"message": ...}`` and change nothing. A well-formed click always answers 200, even when
it changes nothing (an unknown run, a decided approval): Slack retries anything else.
The run is never driven here: approving hands it to the dispatcher or the broker.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs

from django.http import HttpRequest, JsonResponse

from apps.integrations.hooks import HookView, read_body
from apps.integrations.slack import client
from apps.integrations.slack.approvals import ACTIONS, APPROVE, approval_decide
from apps.integrations.slack.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SlackRequestError,
    verify_request,
)

log = logging.getLogger("flowops.slack")

FORM = "application/x-www-form-urlencoded"
# Slack's interaction payloads carry the clicked message (at most 50 blocks); far below this.
MAX_BYTES = 256 * 1024


class SlackInteractionsView(HookView):
    allowed = "Slack POSTs interactions"

    def receive(self, request: HttpRequest) -> JsonResponse:
        body = read_body(request, content_type=FORM, limit=MAX_BYTES)
        verify_request(body=body, timestamp=request.headers.get(TIMESTAMP_HEADER),
                       signature=request.headers.get(SIGNATURE_HEADER))
        click = parse_click(parse_payload(body))
        if click is None:
            return JsonResponse({"message": "nothing to do for this interaction"})
        with client.quick():  # Slack waits 3 s for the answer; the message update is extra
            result = approval_decide(**click)
        log.info("Slack click on run %s step %s by %s: %s", click["run_id"],
                 click["step_key"], click["user_id"], result.message)
        return JsonResponse({"outcome": result.outcome, "message": result.message})


def parse_payload(body: bytes) -> dict[str, Any]:
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SlackRequestError(400, f"body is not a form: {exc}") from None
    values = form.get("payload")
    if not values:
        raise SlackRequestError(400, "form field 'payload' is missing")
    try:
        payload = json.loads(values[-1])
    except json.JSONDecodeError as exc:
        raise SlackRequestError(400, f"payload is not JSON: {exc}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise SlackRequestError(400, "payload must be a JSON object with a 'type'")
    return payload


def parse_click(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The approval_decide arguments of a click on our buttons; None for anything else."""
    if payload["type"] != "block_actions":
        return None
    actions = payload.get("actions")
    if not isinstance(actions, list):
        raise SlackRequestError(400, "block_actions payload has no 'actions' list")
    ours = [a for a in actions if isinstance(a, dict) and a.get("action_id") in ACTIONS]
    if not ours:
        return None
    action = ours[0]
    target = _json_object(action.get("value"), "action value")
    run_id, step_key = target.get("run"), target.get("step")
    if not isinstance(run_id, str) or not isinstance(step_key, str):
        raise SlackRequestError(400, "action value must name a 'run' and a 'step' (strings)")
    user = payload.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("id"), str) or not user["id"]:
        raise SlackRequestError(400, "payload has no 'user' with an 'id'")
    container = payload.get("container") if isinstance(payload.get("container"), dict) else {}
    return {"run_id": run_id, "step_key": step_key, "approve": action["action_id"] == APPROVE,
            "user_id": user["id"], "user_name": str(user.get("username") or user.get("name")
                                                    or ""),
            "channel_id": str(container.get("channel_id") or ""),
            "ts": str(container.get("message_ts") or "")}


def _json_object(text: Any, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise SlackRequestError(400, f"{what} is not a JSON object")
    return value
