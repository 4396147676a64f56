"""``POST /hooks/slack/events``: signed with slack-sdk's own code, answered by the real
slack-sdk WebClient talking to the fake Slack Web API; every bad delivery stores nothing."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client

from apps.memory.models import Row
from apps.runs.models import Run
from apps.workflows.models import Event
from apps.workflows.services.registry import workflow_register
from flowops import memory
from tests.fakes.fixtures import SLACK_SIGNING_SECRET
from tests.fakes.slack_server import BOT_ID, BOT_USER_ID, TEAM_ID, message_event, signed_headers
from tests.integration.helpers import wait_for_run

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/hooks/slack/events"
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "slack_support.py"

ECHO = '''
from flowops import slack, trigger

@trigger(integration="slack", event="message", options={"channel": "#support"})
def run(context):
    message = context.message
    slack.reply(message.channel, f"echo: {message.text}", thread_ts=message.ts)
    return {"event": context.trigger.event, "text": message.text, "user": message.user,
            "channel": message.channel, "ts": message.ts, "thread_ts": message.thread_ts,
            "team": message.team}
'''


def post(body: dict | str | bytes, *, signed: bool = True, content_type="application/json",
         timestamp: int | None = None, **headers: str):
    raw = json.dumps(body) if isinstance(body, dict) else body
    raw = raw.encode() if isinstance(raw, str) else raw
    if signed:
        headers = {**signed_headers(SLACK_SIGNING_SECRET, raw, timestamp=timestamp), **headers}
    headers.pop("Content-Type", None)
    return Client().post(URL, raw, content_type=content_type, headers=headers)


def nothing_stored() -> bool:
    return not Event.objects.exists() and not Run.objects.exists()


def ended(run_id: str) -> Run:
    return wait_for_run(run_id, statuses=set(Run.TERMINAL))


def registered(write_script, source: str, name: str):
    return workflow_register(write_script(source, name)).workflow


@pytest.fixture
def echo(slack_env, dispatcher, write_script):
    return registered(write_script, ECHO, "echo.py")


def test_a_signed_message_starts_a_run_that_sees_it_and_replies(echo, slack_env):
    event = message_event("where is my order?", thread_ts="1699999999.000001")

    answer = post(event)

    assert answer.status_code == 200
    assert answer.json()["duplicate"] is False
    [run_id] = answer.json()["runs"]
    run = ended(run_id)
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.output == {"event": "message", "text": "where is my order?",
                          "user": "U0CUSTOMER", "channel": "C0SUPPORT",
                          "ts": "1700000000.000100", "thread_ts": "1699999999.000001",
                          "team": TEAM_ID}
    stored = Event.objects.get(source="slack")
    assert (stored.key, stored.status, stored.id) == ("Ev0001", "started", run.event_id)
    assert run.trigger.workflow == echo
    [reply] = slack_env.posts
    assert (reply["channel"], reply["text"], reply["thread_ts"]) == (
        "C0SUPPORT", "echo: where is my order?", "1700000000.000100")


def test_url_verification_is_answered_with_the_challenge(slack_env):
    answer = post({"token": "unused", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFX"
                                                    "O7tYXAYM8P", "type": "url_verification"})

    assert answer.status_code == 200
    assert answer.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    assert nothing_stored()


NOW = "now"  # the time of the request, not of collection
BAD_SIGNATURE = {"X-Slack-Request-Timestamp": NOW, "X-Slack-Signature": "v0=" + "0" * 64}


@pytest.mark.parametrize(("body", "options", "status", "message"), [
    (message_event("hi"), {"signed": False}, 401,
     "X-Slack-Request-Timestamp is missing: the request is not signed"),
    (message_event("hi"), {"signed": False, "X-Slack-Request-Timestamp": "1"}, 401,
     "X-Slack-Signature is missing: the request is not signed"),
    (message_event("hi"), {"signed": False, **BAD_SIGNATURE}, 401,
     "X-Slack-Signature does not match the body (check SLACK_SIGNING_SECRET)"),
    (message_event("hi"), {"timestamp": int(time.time()) - 301}, 401,
     "X-Slack-Request-Timestamp is more than 5 minutes from now (a replayed or delayed "
     "request)"),
    (message_event("hi"), {"signed": False, "X-Slack-Request-Timestamp": "soon",
                           "X-Slack-Signature": "v0=00"}, 401,
     "X-Slack-Request-Timestamp is not a Unix time: 'soon'"),
    ("{not json", {}, 400, "body is not JSON: Expecting property name enclosed in double "
                           "quotes: line 1 column 2 (char 1)"),
    ("[1, 2]", {}, 400, "body must be a JSON object, not list"),
    ({**message_event("hi"), "event_id": None}, {}, 400,
     "event_callback without an event_id"),
    ({**message_event("hi"), "event": None}, {}, 400, "event_callback without an event object"),
    ({**message_event("hi"), "type": "block_actions"}, {}, 400,
     "type must be event_callback or url_verification, not 'block_actions'"),
    ({"type": "url_verification"}, {}, 400, "url_verification without a challenge"),
    (message_event("hi", channel=None), {}, 400, "message event without a channel"),
    (message_event("hi"), {"content_type": "application/x-www-form-urlencoded"}, 415,
     "Content-Type must be application/json, not application/x-www-form-urlencoded"),
])
def test_bad_deliveries_are_refused_naming_the_problem_and_store_nothing(
        echo, body, options, status, message):
    answer = post(body, **{name: str(int(time.time())) if value == NOW else value
                           for name, value in options.items()})

    assert (answer.status_code, answer.json()) == (status, {"message": message})
    assert nothing_stored()


def test_oversized_bodies_and_other_methods_are_refused(echo, settings):
    settings.FLOWOPS_WEBHOOK_MAX_BYTES = 100

    too_big = post(message_event("x" * 200))
    get = Client().get(URL)

    assert (too_big.status_code, too_big.json()) == (413, {"message": "body is over 100 bytes"})
    assert get.status_code == 405
    assert nothing_stored()


def test_without_a_signing_secret_the_endpoint_says_so(echo, settings):
    settings.SLACK_SIGNING_SECRET = ""

    answer = post(message_event("hi"))

    assert answer.status_code == 503
    assert answer.json() == {"message": "SLACK_SIGNING_SECRET is not set: this server cannot "
                                        "verify Slack's requests"}
    assert nothing_stored()


def test_three_retries_of_one_event_start_one_run(echo, slack_env):
    event = message_event("hello?", event_id="EvRETRY")

    first = post(event)
    retries = [post(event, **{"X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason":
                              "http_timeout"}) for n in (1, 2, 3)]

    assert [a.status_code for a in (first, *retries)] == [200] * 4
    [run_id] = first.json()["runs"]
    assert all(a.json() == {"event": first.json()["event"], "duplicate": True,
                            "runs": [run_id]} for a in retries)
    ended(run_id)
    assert Run.objects.count() == 1 and Event.objects.filter(source="slack").count() == 1
    assert len(slack_env.posts) == 1


def test_a_retry_of_a_delivery_that_failed_is_processed(echo, slack_env):
    # given Slack failing the channel lookup the first delivery needs
    slack_env.fail("conversations.list", error="internal_error")
    event = message_event("anyone?", event_id="EvFAILED")

    failed = post(event)
    assert failed.status_code == 503
    assert failed.json() == {"message": "Slack conversations.list failed: internal_error; "
                                        "Slack will retry the event"}
    assert nothing_stored()

    # when Slack retries it
    retry = post(event, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_error"})

    # then it is processed in full
    assert retry.status_code == 200 and retry.json()["duplicate"] is False
    [run_id] = retry.json()["runs"]
    assert ended(run_id).status == Run.Status.SUCCEEDED
    assert len(slack_env.posts) == 1


def test_an_unresponsive_slack_is_not_waited_for_long(echo, settings):
    # given a Slack API that accepts connections and never answers
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        settings.SLACK_API_URL = f"http://127.0.0.1:{silent.getsockname()[1]}/api/"

        answer = post(message_event("hello?"))

    assert answer.status_code == 503
    assert answer.json()["message"].startswith("Slack auth.test failed: ")
    assert answer.json()["message"].endswith("; Slack will retry the event")
    assert nothing_stored()


@pytest.mark.parametrize(("event", "reason"), [
    (message_event("my own reply", user=BOT_USER_ID), "the bot's own message"),
    (message_event("posted by the app", bot_id=BOT_ID), "a bot's message"),
    (message_event("edited", subtype="message_changed"),
     "message subtype 'message_changed' is not handled"),
    (message_event("", subtype="channel_join"), "message subtype 'channel_join' is not handled"),
    (message_event("", kind="reaction_added"), "event type 'reaction_added' is not handled"),
])
def test_the_bots_own_messages_subtypes_and_other_events_start_nothing(
        echo, slack_env, event, reason):
    answer = post(event)

    assert (answer.status_code, answer.json()) == (200, {"ignored": reason})
    assert nothing_stored()
    assert slack_env.posts == []


CHANNEL = '''
from flowops import trigger

@trigger(integration="slack", event="message", options={"channel": CHANNEL})
def run(context):
    return context.message.channel
'''


def test_the_channel_option_matches_by_name_or_by_id(slack_env, dispatcher, write_script):
    by_name = registered(write_script, CHANNEL.replace("CHANNEL", '"#support"'), "by_name.py")
    bare = registered(write_script, CHANNEL.replace("CHANNEL", '"support"'), "bare.py")
    by_id = registered(write_script, CHANNEL.replace("CHANNEL", '"C0SALES"'), "by_id.py")

    support = post(message_event("a", channel="C0SUPPORT", event_id="Ev1")).json()["runs"]
    sales = post(message_event("b", channel="C0SALES", event_id="Ev2")).json()["runs"]
    general = post(message_event("c", channel="C0GENERAL", event_id="Ev3")).json()

    assert sorted(Run.objects.get(pk=r).trigger.workflow.slug for r in support) == [
        bare.slug, by_name.slug]
    assert [Run.objects.get(pk=r).trigger.workflow for r in sales] == [by_id]
    assert general["runs"] == []
    assert Event.objects.get(source="slack", key="Ev3").status == Event.Status.IGNORED
    assert [ended(r).output for r in support + sales] == ["C0SUPPORT", "C0SUPPORT", "C0SALES"]
    assert slack_env.calls("conversations.list") == ["conversations.list"]  # names cached


BOTH = '''
from flowops import trigger

@trigger(integration="slack", event="message", options={"channel": "#support"})
@trigger(integration="slack", event="app_mention")
def run(context):
    return context.trigger.event
'''

MENTIONS = '''
from flowops import trigger

@trigger(integration="slack", event="app_mention", options={"channel": "C0SUPPORT"})
def run(context):
    return context.trigger.event
'''


def test_a_mention_sent_as_message_and_app_mention_starts_one_run_per_workflow(
        slack_env, dispatcher, write_script):
    # given a workflow listening to both events and one listening to mentions only
    both = registered(write_script, BOTH, "both.py")
    mentions = registered(write_script, MENTIONS, "mentions.py")
    text = f"<@{BOT_USER_ID}> can you help?"

    # when Slack sends the one message twice, with different event ids
    as_message = post(message_event(text, event_id="EvMSG")).json()
    as_mention = post(message_event(text, event_id="EvMENTION", kind="app_mention")).json()

    # then each workflow runs once
    assert [Run.objects.get(pk=r).trigger.workflow for r in as_message["runs"]] == [both]
    assert [Run.objects.get(pk=r).trigger.workflow for r in as_mention["runs"]] == [mentions]
    assert Run.objects.count() == 2
    assert [ended(r).output for r in as_message["runs"] + as_mention["runs"]] == [
        "message", "app_mention"]


def test_concurrent_deliveries_of_one_message_start_one_run(slack_env, dispatcher,
                                                            write_script):
    both = registered(write_script, BOTH, "both.py")
    together = threading.Barrier(4)
    answers = []

    def deliver(event_id: str, kind: str) -> None:
        try:
            together.wait()
            answers.append(post(message_event("<@U> hi", event_id=event_id, kind=kind)))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=args) for args in [
        ("EvA", "message"), ("EvA", "message"), ("EvB", "app_mention"), ("EvB", "app_mention")]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(a.status_code for a in answers) == [200] * 4
    [run] = Run.objects.all()
    assert run.trigger.workflow == both
    assert Event.objects.filter(source="slack").count() == 2
    ended(run.id)


def test_the_seed_example_classifies_stores_and_replies(slack_env, dispatcher, monkeypatch):
    monkeypatch.setenv("FLOWOPS_AI_MODEL", "offline")
    workflow = workflow_register(EXAMPLE).workflow

    answer = post(message_event("How do I reset my password?"))

    [run_id] = answer.json()["runs"]
    assert ended(run_id).status == Run.Status.SUCCEEDED
    [row] = memory.query("messages")
    assert (row["type"], row["content"]) == ("question", "How do I reset my password?")
    assert Row.objects.get(pk=row["id"]).workflow_id == workflow.id
    [reply] = slack_env.posts
    assert (reply["channel"], reply["text"]) == ("C0SUPPORT",
                                                 "Thanks for your question! Let me help.")
