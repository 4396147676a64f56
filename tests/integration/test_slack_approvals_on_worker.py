"""Approvals in Slack on a real Celery worker: the worker posts the question once, a signed
click approves the run and the worker finishes it."""

from __future__ import annotations

import pytest

from apps.integrations.models import SlackApproval
from apps.runs.services import runs as run_services
from tests.apps.integrations.slack_clicks import (  # noqa: F401  (fake_slack: a fixture)
    APPROVALS,
    click,
    fake_slack,
)
from tests.fakes.fixtures import slack_env  # noqa: F401  (a fixture)
from tests.integration.helpers import describe, start_run, step_row, wait_for_run, wait_until

pytestmark = pytest.mark.integration

REVIEW = """
@step
def draft(topic: str) -> str:
    record("draft")
    return f"A post about {topic}"


@step
def publish(answer) -> str:
    record("publish")
    return f"published ({answer})"


review = Step.human_in_the_loop("review", message_for_user="Publish it?",
                                slack_channel="#approvals")
pipeline = draft >> review >> publish
"""


def test_a_click_approves_a_run_paused_on_a_worker(slack_env, start_worker, effects,  # noqa: F811
                                                   write_flow):
    start_worker()  # after slack_env: the worker inherits the fake Slack's settings
    run = wait_for_run(start_run(write_flow(REVIEW), input="otters").id)
    assert (run.status, run.paused_step_key) == ("paused", "review"), describe(run.id)
    [post] = wait_until(lambda: slack_env.posts, "the worker posts the question")
    assert post["channel"] == APPROVALS

    run_services.recover_stuck()  # a recovery pass posts nothing more
    answer = click(post)

    assert (answer.status_code, answer.json()["outcome"]) == (200, "approved")
    run = wait_for_run(run.id)
    assert (run.status, run.output) == ("succeeded", "published (None)"), describe(run.id)
    assert step_row(run, "review").decided_by == "slack:U0ADA"
    assert effects.counts() == {"draft": 1, "publish": 1}
    assert len(slack_env.posts) == 1
    assert SlackApproval.objects.get().status == "approved"
