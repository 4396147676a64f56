"""The Slack Web API as FlowOps uses it: one configured WebClient, the bot's identity and
the workspace's channel names, each asked of Slack once and cached per process.

``SLACK_API_URL`` points the client at Slack (default) or at a test's fake server; the
token is ``SLACK_BOT_TOKEN``. Channel names are cached for ``CHANNEL_TTL_S`` seconds: a
channel renamed in Slack is seen within that time, and an unknown name refreshes the map
at once (at most every ``MISS_REFRESH_S`` seconds, so a typo cannot hammer Slack).

Calls wait ``TIMEOUT_S`` for Slack; the inbound events endpoint wraps its calls in
``quick()``, since Slack wants its answer within 3 seconds and retries a failed delivery.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from flowops.exceptions import SlackError

CHANNEL_TTL_S = 300.0
MISS_REFRESH_S = 10.0
PAGE_SIZE = 200
TIMEOUT_S = 10.0
QUICK_TIMEOUT_S = 1.0

_timeout: ContextVar[float] = ContextVar("slack_timeout", default=TIMEOUT_S)


@contextmanager
def quick(timeout: float = QUICK_TIMEOUT_S) -> Iterator[None]:
    """Calls made inside wait at most ``timeout`` seconds for Slack (the inbound path)."""
    token = _timeout.set(timeout)
    try:
        yield
    finally:
        _timeout.reset(token)


def web_client() -> WebClient:
    if not settings.SLACK_BOT_TOKEN:
        raise SlackError("client", "SLACK_BOT_TOKEN is not set")
    # Retries of a post are the journal's business (an effect is never sent twice), so
    # the client itself does not retry.
    return WebClient(token=settings.SLACK_BOT_TOKEN, base_url=settings.SLACK_API_URL,
                     timeout=_timeout.get(), retry_handlers=[])


def call(method: str, **params) -> dict:
    """Call a WebClient method (``"chat_postMessage"``); Slack's failures raise SlackError."""
    api_name = method.replace("_", ".", 1)
    try:
        return getattr(web_client(), method)(**params).data
    except SlackApiError as exc:
        raise SlackError(api_name, exc.response.get("error") or str(exc)) from None
    except (SlackClientError, OSError) as exc:
        raise SlackError(api_name, f"{type(exc).__name__}: {exc}") from None


@dataclass
class _Directory:
    names: dict[str, str]  # channel id -> name
    loaded_at: float


_lock = threading.Lock()
_directory: _Directory | None = None
_bot_user_id: str | None = None


def bot_user_id() -> str | None:
    """The bot's own user id (``auth.test``), so its own messages start nothing."""
    global _bot_user_id
    if _bot_user_id is None and settings.SLACK_BOT_TOKEN:
        _bot_user_id = call("auth_test").get("user_id")
    return _bot_user_id


def channel_names(*, refresh: bool = False) -> dict[str, str]:
    """Channel id -> name of every channel the bot can see, cached."""
    global _directory
    with _lock:
        age = time.monotonic() - _directory.loaded_at if _directory else None
        if age is None or age > CHANNEL_TTL_S or (refresh and age > MISS_REFRESH_S):
            _directory = _Directory(names=_list_channels(), loaded_at=time.monotonic())
        return _directory.names


def _list_channels() -> dict[str, str]:
    names: dict[str, str] = {}
    cursor = None
    while True:
        page = call("conversations_list", limit=PAGE_SIZE, exclude_archived=True,
                    types="public_channel,private_channel",
                    **({"cursor": cursor} if cursor else {}))
        names.update({c["id"]: c["name"] for c in page.get("channels", [])})
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return names


def channel_id(channel: str) -> str:
    """``"#support"`` or ``"support"`` -> its id; an id is returned as it is."""
    name = channel.removeprefix("#")
    if not channel.startswith("#") and _looks_like_id(channel):
        return channel
    for refresh in (False, True):
        for cid, known in channel_names(refresh=refresh).items():
            if known == name:
                return cid
    raise SlackError("conversations.list", f"no channel named #{name} is visible to the bot")


def channel_matches(option: str, channel_id_: str) -> bool:
    """Whether a trigger's ``channel`` option (a name or an id) means this channel."""
    if option == channel_id_:
        return True
    if _looks_like_id(option):  # another channel's id: no need to ask Slack
        return False
    name = option.removeprefix("#")
    names = channel_names()
    if channel_id_ not in names:
        names = channel_names(refresh=True)
    return names.get(channel_id_) == name


def _looks_like_id(value: str) -> bool:
    return value[:1] in "CGD" and value.isalnum() and value.upper() == value


def forget() -> None:
    """Drop the cached bot identity and channel names (tests, settings changes)."""
    global _directory, _bot_user_id
    with _lock:
        _directory = None
        _bot_user_id = None
