"""Slack's request signing, checked the same way for every inbound Slack endpoint.

Slack signs ``v0:<timestamp>:<body>`` with the app's signing secret; slack-sdk's
``SignatureVerifier`` checks it. A request more than 5 minutes from now is refused as a
replay, as Slack advises.
"""

from __future__ import annotations

import time

from django.conf import settings
from slack_sdk.signature import SignatureVerifier

from apps.integrations.hooks import HookError

MAX_AGE_S = 5 * 60
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
SIGNATURE_HEADER = "X-Slack-Signature"


class SlackRequestError(HookError):
    """An inbound Slack request refused: ``http_status`` and a message naming why."""


def verify_request(*, body: bytes, timestamp: str | None, signature: str | None) -> None:
    """Raise SlackRequestError unless Slack signed ``body`` in the last 5 minutes."""
    secret = settings.SLACK_SIGNING_SECRET
    if not secret:
        raise SlackRequestError(503, "SLACK_SIGNING_SECRET is not set: this server cannot "
                                     "verify Slack's requests")
    if not timestamp or not signature:
        missing = TIMESTAMP_HEADER if not timestamp else SIGNATURE_HEADER
        raise SlackRequestError(401, f"{missing} is missing: the request is not signed")
    try:
        age = time.time() - int(timestamp)
    except ValueError:
        raise SlackRequestError(401, f"{TIMESTAMP_HEADER} is not a Unix time: "
                                     f"{timestamp[:40]!r}") from None
    if abs(age) > MAX_AGE_S:
        raise SlackRequestError(401, f"{TIMESTAMP_HEADER} is more than 5 minutes from now "
                                     "(a replayed or delayed request)")
    try:
        valid = SignatureVerifier(secret).is_valid(body=body, timestamp=timestamp,
                                                   signature=signature)
    except UnicodeDecodeError:
        valid = False
    if not valid:
        raise SlackRequestError(401, f"{SIGNATURE_HEADER} does not match the body "
                                     "(check SLACK_SIGNING_SECRET)")
