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
import time
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from slack_sdk.signature import SignatureVerifier

from apps.integrations.slack.approvals import ACTIONS, APPROVE, approval_decide

log = logging.getLogger("flowops.slack")

FORM = "application/x-www-form-urlencoded"
# Slack's interaction payloads carry the clicked message (at most 50 blocks); far below this.
MAX_BYTES = 256 * 1024
MAX_AGE_S = 5 * 60  # Slack's own rule, and slack-sdk's verifier's


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"message": message}, status=status)


@method_decorator(csrf_exempt, name="dispatch")
class SlackInteractionsView(View):
    http_method_names = ["post"]

    def http_method_not_allowed(self, request, *args, **kwargs):
        return error(405, f"{request.method} is not allowed; Slack POSTs interactions")

    def post(self, request: HttpRequest) -> JsonResponse:
        try:
            body = read_body(request)
            verify(request, body)
            payload = parse_payload(body)
            click = parse_click(payload)
        except BadRequest as exc:
            return error(exc.status, exc.message)
        if click is None:
            return JsonResponse({"message": "nothing to do for this interaction"})
        result = approval_decide(**click)
        log.info("Slack click on run %s step %s by %s: %s", click["run_id"],
                 click["step_key"], click["user_id"], result.message)
        return JsonResponse({"outcome": result.outcome, "message": result.message})


def read_body(request: HttpRequest) -> bytes:
    if int(request.META.get("CONTENT_LENGTH") or 0) > MAX_BYTES:
        raise BadRequest(413, f"body is over {MAX_BYTES} bytes")
    if request.content_type != FORM:
        raise BadRequest(415, f"Content-Type must be {FORM}, not "
                              f"{request.content_type or 'missing'}")
    body = request.body
    if len(body) > MAX_BYTES:
        raise BadRequest(413, f"body is over {MAX_BYTES} bytes")
    return body


def verify(request: HttpRequest, body: bytes) -> None:
    """Slack's signature, checked with slack-sdk's own verifier."""
    secret = settings.SLACK_SIGNING_SECRET
    if not secret:
        raise BadRequest(503, "Slack is not configured here: set SLACK_SIGNING_SECRET")
    stamp = request.headers.get("X-Slack-Request-Timestamp", "")
    signature = request.headers.get("X-Slack-Signature")
    if not stamp.isdigit() or not signature:
        raise BadRequest(401, "X-Slack-Request-Timestamp and X-Slack-Signature are required")
    if abs(time.time() - int(stamp)) > MAX_AGE_S:
        raise BadRequest(401, "X-Slack-Request-Timestamp is more than 5 minutes away; "
                              "the request is stale or replayed")
    if not SignatureVerifier(secret).is_valid(body=body, timestamp=stamp, signature=signature):
        raise BadRequest(401, "X-Slack-Signature does not match the body")


def parse_payload(body: bytes) -> dict[str, Any]:
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(400, f"body is not a form: {exc}") from None
    values = form.get("payload")
    if not values:
        raise BadRequest(400, "form field 'payload' is missing")
    try:
        payload = json.loads(values[-1])
    except json.JSONDecodeError as exc:
        raise BadRequest(400, f"payload is not JSON: {exc}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise BadRequest(400, "payload must be a JSON object with a 'type'")
    return payload


def parse_click(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The approval_decide arguments of a click on our buttons; None for anything else."""
    if payload["type"] != "block_actions":
        return None
    actions = payload.get("actions")
    if not isinstance(actions, list):
        raise BadRequest(400, "block_actions payload has no 'actions' list")
    ours = [a for a in actions if isinstance(a, dict) and a.get("action_id") in ACTIONS]
    if not ours:
        return None
    action = ours[0]
    target = _json_object(action.get("value"), "action value")
    run_id, step_key = target.get("run"), target.get("step")
    if not isinstance(run_id, str) or not isinstance(step_key, str):
        raise BadRequest(400, "action value must name a 'run' and a 'step' (strings)")
    user = payload.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("id"), str) or not user["id"]:
        raise BadRequest(400, "payload has no 'user' with an 'id'")
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
        raise BadRequest(400, f"{what} is not a JSON object")
    return value
