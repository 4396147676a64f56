"""Clicks on a posted approval, as Slack delivers them to ``POST /hooks/slack/interactions``:
a ``block_actions`` payload in a form field, signed with slack-sdk's own signing code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from django.test import Client

from apps.integrations.slack.approvals import APPROVE
from tests.fakes.fixtures import SLACK_SIGNING_SECRET
from tests.fakes.slack_server import DEFAULT_CHANNELS, TEAM_ID, FakeSlackServer, signed_headers

URL = "/hooks/slack/interactions"
FORM = "application/x-www-form-urlencoded"
APPROVALS = "C0APPROVE"  # the id of #approvals on the fake Slack


@pytest.fixture
def fake_slack() -> Iterator[FakeSlackServer]:
    """The fake Slack, with an #approvals channel (overrides tests.fakes.fixtures')."""
    server = FakeSlackServer(channels={**DEFAULT_CHANNELS, APPROVALS: "approvals"}).start()
    try:
        yield server
    finally:
        server.stop()


def click_payload(post: dict, action: str = APPROVE, *, user_id: str = "U0ADA",
                  username: str = "ada") -> dict:
    """A block_actions payload as Slack sends it for a click on the posted message."""
    [button] = [e for block in post["blocks"] if block["type"] == "actions"
                for e in block["elements"] if e["action_id"] == action]
    return {
        "type": "block_actions", "api_app_id": "A0APP", "trigger_id": "1.2.abc",
        "team": {"id": TEAM_ID, "domain": "flowops"},
        "user": {"id": user_id, "username": username, "name": username, "team_id": TEAM_ID},
        "container": {"type": "message", "message_ts": post["ts"], "channel_id": post["channel"],
                      "is_ephemeral": False},
        "channel": {"id": post["channel"], "name": "approvals"},
        "message": {"ts": post["ts"], "text": post["text"], "blocks": post["blocks"]},
        "response_url": "https://hooks.slack.invalid/actions/1",
        "actions": [{"type": "button", "action_id": action, "block_id": "flowops_approval",
                     "value": button["value"], "action_ts": "1700000001.000200",
                     "text": button["text"]}],
    }


def form(payload: dict | str) -> str:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return urlencode({"payload": text})


def send(body: str, *, sign: bool = True, content_type: str = FORM, secret: str | None = None,
         timestamp: int | None = None, signature: str | None = None):
    headers = {}
    if sign:
        signed = signed_headers(secret or SLACK_SIGNING_SECRET, body, timestamp=timestamp,
                                content_type=content_type)
        headers = {"HTTP_X_SLACK_REQUEST_TIMESTAMP": signed["X-Slack-Request-Timestamp"],
                   "HTTP_X_SLACK_SIGNATURE": signature or signed["X-Slack-Signature"]}
    return Client().post(URL, body, content_type=content_type, **headers)


def click(post: dict, action: str = APPROVE, **user):
    return send(form(click_payload(post, action, **user)))
