"""``slack.reply``: a script answers in Slack, once.

The post is a journaled effect: a script that runs again after a crash or a retry gets
the recorded message back instead of posting a second time. Its journal name is
``slack.reply`` (``FLOWOPS_FAULT=after_activity:slack.reply`` stops a worker right after
the post, to test exactly that).
"""

from __future__ import annotations

from typing import Any

from flowops._runtime import activity
from flowops.exceptions import SlackError

__all__ = ["SlackError", "reply"]


@activity(name="slack.reply", effect=True)
def reply(channel: str, text: str, thread_ts: str | None = None) -> dict[str, Any]:
    """Post ``text`` to ``channel`` (an id like ``C0123ABCD`` or a name like ``#support``),
    in the thread of ``thread_ts`` if given. Returns ``{"channel": id, "ts": ts}``;
    raises ``SlackError`` when Slack refuses."""
    from flowops._django import ensure_django

    ensure_django()
    from apps.integrations.slack import client

    params: dict[str, Any] = {"channel": client.channel_id(channel), "text": text}
    if thread_ts:
        params["thread_ts"] = thread_ts
    posted = client.call("chat_postMessage", **params)
    return {"channel": posted["channel"], "ts": posted["ts"]}
