"""The seed's Slack agent (examples/slack_support.py) on a real Celery worker.

A signed event is posted to ``/hooks/slack/events`` in this process; with the ``celery``
driver the run goes to the broker and a worker runs the script: the offline AI provider
classifies the intent, ``memory.store`` writes a row of the ``messages`` table and
``slack.reply`` posts with the real slack-sdk WebClient to the fake Slack. Workers get the
``SLACK_*`` settings from the environment ``slack_env`` sets, so each test starts its
own worker after it (the fake Slack's port differs per test).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client

from apps.memory.models import Row
from apps.runs.models import Run
from apps.runs.services import runs as run_services
from apps.workflows.models import Event
from apps.workflows.services.registry import workflow_register
from tests.fakes.fixtures import SLACK_SIGNING_SECRET
from tests.fakes.slack_server import message_event, signed_headers
from tests.integration.helpers import describe, wait_for_run, wait_until

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "slack_support.py"
TEXT = "How do I reset my password?"
REPLY = "Thanks for your question! Let me help."
OFFLINE = {"FLOWOPS_AI_MODEL": "offline"}


def deliver(event: dict, retry: int = 0) -> dict:
    body = json.dumps(event).encode()
    headers = signed_headers(SLACK_SIGNING_SECRET, body)
    headers.pop("Content-Type")
    if retry:
        headers.update({"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"})
    answer = Client().post("/hooks/slack/events", body, content_type="application/json",
                           headers=headers)
    assert answer.status_code == 200, answer.content
    return answer.json()


def assert_answered_once(run_id: str, slack) -> None:
    run = wait_for_run(run_id)
    assert run.status == Run.Status.SUCCEEDED, describe(run_id)
    [row] = Row.objects.filter(table__name="messages")
    assert row.run_id == run_id and row.workflow_id == run.trigger.workflow_id
    assert sorted(map(str, row.data.values())) == sorted(["question", TEXT])
    assert [(p["channel"], p["text"]) for p in slack.posts] == [("C0SUPPORT", REPLY)]


def test_a_slack_message_is_classified_stored_and_answered_on_a_worker(
        slack_env, start_worker):
    workflow_register(EXAMPLE)
    start_worker(env=OFFLINE)

    [run_id] = deliver(message_event(TEXT))["runs"]

    assert Run.objects.get(pk=run_id).driver == "celery"
    assert_answered_once(run_id, slack_env)


def test_three_slack_retries_of_the_event_start_one_run(slack_env, start_worker):
    workflow_register(EXAMPLE)
    start_worker(env=OFFLINE)
    event = message_event(TEXT, event_id="EvRETRIED")

    first = deliver(event)
    retries = [deliver(event, retry=n) for n in (1, 2, 3)]

    [run_id] = first["runs"]
    assert [r["runs"] for r in retries] == [[run_id]] * 3
    assert all(r["duplicate"] for r in retries)
    assert_answered_once(run_id, slack_env)
    assert Run.objects.count() == 1 and Event.objects.filter(source="slack").count() == 1


def test_a_worker_killed_right_after_the_reply_does_not_reply_twice(slack_env, start_worker):
    # given a worker that runs tasks in its own process and dies right after slack.reply
    workflow_register(EXAMPLE)
    doomed = start_worker(pool="solo",
                          env={**OFFLINE, "FLOWOPS_FAULT": "after_activity:slack.reply"})

    [run_id] = deliver(message_event(TEXT))["runs"]
    doomed.process.wait(timeout=60)
    assert "FLOWOPS_FAULT after_activity:slack.reply" in doomed.log()
    wait_until(lambda: slack_env.posts, "the reply was posted")
    assert Run.objects.get(pk=run_id).status == Run.Status.RUNNING

    # when a fresh worker comes and the run is recovered
    start_worker(env=OFFLINE)
    run_services.run_resume(run_id=run_id)

    # then the script ran again from the top, and the journal kept its row and its reply
    assert_answered_once(run_id, slack_env)
    step = Run.objects.get(pk=run_id).steps.get(key="run")
    assert (step.attempt, step.lost) == (2, 1)
