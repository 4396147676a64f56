"""``slack.reply`` with the real slack-sdk WebClient against the fake Slack Web API."""

from __future__ import annotations

import pytest

from apps.integrations.slack import client
from apps.runs.models import Run
from apps.runs.services.runs import run_create, run_resume, run_start
from flowops import SlackError, slack
from flowops.context import envelope
from tests.apps.runs.conftest import EMBEDDED

REPLY = '''
    from flowops import slack, trigger

    @trigger(integration="slack", event="message", options={"channel": "#support"})
    def run(context):
        posted = slack.reply(context.message.channel, "on it", thread_ts=context.message.ts)
        if not context.payload:
            raise RuntimeError("crashed after the reply")
        return posted
'''


def test_reply_posts_through_the_web_client_and_resolves_channel_names(slack_env):
    posted = slack.reply("#support", "hello")

    assert posted["channel"] == "C0SUPPORT"
    [post] = slack_env.posts
    assert (post["channel"], post["text"], post.get("thread_ts")) == ("C0SUPPORT", "hello", None)
    assert slack_env.calls() == ["conversations.list", "chat.postMessage"]


def test_channel_names_are_read_page_by_page_and_cached(slack_env, monkeypatch):
    monkeypatch.setattr(client, "PAGE_SIZE", 1)

    assert client.channel_id("#sales") == "C0SALES"
    assert client.channel_id("general") == "C0GENERAL"
    assert client.channel_id("C0ANYID") == "C0ANYID"
    assert len(slack_env.calls("conversations.list")) == 3


def test_slack_refusals_raise_slack_error_naming_method_and_reason(slack_env, settings):
    with pytest.raises(SlackError, match="no channel named #nowhere"):
        slack.reply("#nowhere", "hello")
    with pytest.raises(SlackError, match="chat.postMessage failed: channel_not_found"):
        slack.reply("C0DELETED", "hello")
    settings.SLACK_BOT_TOKEN = "xoxb-wrong"
    with pytest.raises(SlackError, match="chat.postMessage failed: invalid_auth"):
        slack.reply("C0SUPPORT", "hello")
    settings.SLACK_BOT_TOKEN = ""
    with pytest.raises(SlackError, match="SLACK_BOT_TOKEN is not set"):
        slack.reply("C0SUPPORT", "hello")
    assert slack_env.posts == []


@EMBEDDED
def test_a_script_run_again_after_a_crash_does_not_reply_twice(slack_env, make_flow):
    flow = make_flow(REPLY)
    message = {"text": "help", "user": "U1", "channel": "C0SUPPORT", "ts": "1.000100"}
    run = run_create(version=flow.version, loaded=flow.loaded, event_data=envelope(
        integration="slack", event="message", message=message))
    run_start(run)
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED

    Run.objects.filter(pk=run.pk).update(input=envelope(
        integration="slack", event="message", message=message, payload={"fixed": True}))
    run_resume(run_id=run.id)

    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED
    [post] = slack_env.posts
    assert post["thread_ts"] == "1.000100"
    assert run.output == {"channel": "C0SUPPORT", "ts": post["ts"]}
