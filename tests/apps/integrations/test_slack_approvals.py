"""Approvals in Slack: a paused run posts its question with buttons once, a signed click
approves or rejects it and records who; every bad request changes nothing.

The real slack-sdk talks to the fake Slack Web API; clicks are signed with slack-sdk's own
signing code (``signed_headers``).
"""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client

from apps.integrations.models import SlackApproval
from apps.integrations.slack.approvals import APPROVE, REJECT
from apps.integrations.slack.interactions import MAX_BYTES
from apps.runs import hooks
from apps.runs.apis import run_output
from apps.runs.models import Run, StepRun
from apps.runs.services.execution import loaded_for
from apps.runs.services.runs import recover_stuck, run_approve, run_cancel, run_resume
from apps.workflows.services import workflow_version_from_path
from flowops import Step
from flowops.exceptions import PipelineDefinitionError
from tests.apps.api_fixtures import token_client
from tests.apps.integrations.slack_clicks import (  # noqa: F401  (fake_slack: a fixture)
    APPROVALS,
    URL,
    click,
    click_payload,
    fake_slack,
    form,
    send,
)
from tests.fakes.slack_server import FakeSlackServer
from tests.integration.helpers import start_run, wait_for_run, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

REVIEW = '''
from flowops import Step, step


@step
def draft(topic: str) -> str:
    return f"A post about {topic}"


@step
def publish(answer) -> str:
    return f"published ({answer})"


review = Step.human_in_the_loop("review", message_for_user="Publish <this> & that?",
                                slack_channel="#approvals")
pipeline = draft >> review >> publish
'''


@pytest.fixture
def paused(slack_env, dispatcher, write_script) -> Run:
    """A run of REVIEW paused at its human step (driven to the pause in this process)."""
    run = start_run(write_script(REVIEW, "review.py"), input="otters")
    run.refresh_from_db()
    assert (run.status, run.paused_step_key) == (Run.Status.PAUSED, "review")
    return run


# -- helpers -----------------------------------------------------------------------------
def texts(blocks: list[dict]) -> list[str]:
    found = []
    for block in blocks:
        if "text" in block:
            found.append(block["text"]["text"])
        found += [e["text"] for e in block.get("elements", []) if e.get("type") == "mrkdwn"]
    return found


def action_ids(blocks: list[dict]) -> list[str]:
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


# -- asking ------------------------------------------------------------------------------
def test_pausing_posts_one_message_with_two_buttons_to_the_channel(paused, slack_env):
    [post] = slack_env.posts

    assert post["channel"] == APPROVALS
    assert post["text"] == "Approval needed: Publish <this> & that?"
    assert texts(post["blocks"]) == [
        "Publish &lt;this&gt; &amp; that?",
        f"Workflow *review* · run `{paused.id}` · step `review`"]
    assert action_ids(post["blocks"]) == [APPROVE, REJECT]
    values = {e["value"] for b in post["blocks"] if b["type"] == "actions" for e in b["elements"]}
    assert [json.loads(v) for v in values] == [{"run": paused.id, "step": "review"}]
    approval = SlackApproval.objects.get()
    assert (approval.run_id, approval.step_key, approval.channel, approval.channel_id,
            approval.ts, approval.status, approval.post_attempts, approval.post_error) == (
        paused.id, "review", "#approvals", APPROVALS, post["ts"], "pending", 1, "")


def test_a_pause_seen_again_and_recovery_post_nothing_more(paused, slack_env):
    step = loaded_for(paused).plan.locate("review")[0].node.step

    hooks.send(hooks.run_paused, run_id=paused.id, step_key="review", step=step)
    recover_stuck()

    assert len(slack_env.posts) == 1
    assert SlackApproval.objects.get().post_attempts == 1


def test_a_slack_failure_leaves_the_run_paused_and_the_approval_unposted(
        slack_env, dispatcher, write_script):
    slack_env.fail("chat.postMessage", error="ratelimited")

    run = start_run(write_script(REVIEW, "review.py"), input="otters")

    run.refresh_from_db()
    assert (run.status, run.paused_step_key, run.error) == (Run.Status.PAUSED, "review", None)
    assert slack_env.posts == []
    approval = SlackApproval.objects.get()
    assert (approval.ts, approval.status, approval.post_attempts, approval.post_claimed_at) == (
        "", "pending", 1, None)
    assert approval.post_error == "Slack chat.postMessage failed: ratelimited"


def test_recovery_posts_an_unposted_approval_once(slack_env, dispatcher, write_script):
    slack_env.fail("chat.postMessage", error="ratelimited")
    run = start_run(write_script(REVIEW, "review.py"), input="otters")

    recover_stuck()
    recover_stuck()

    [post] = slack_env.posts
    approval = SlackApproval.objects.get()
    assert (approval.ts, approval.post_attempts, approval.post_error) == (post["ts"], 2, "")
    assert Run.objects.get(pk=run.id).status == Run.Status.PAUSED


def test_repeated_failures_back_off_until_the_admin_posts_again(slack_env, dispatcher,
                                                                 write_script, admin_client):
    slack_env.fail("chat.postMessage", error="ratelimited", times=2)
    run = start_run(write_script(REVIEW, "review.py"), input="otters")
    recover_stuck()  # the first retry is at once, and fails too

    recover_stuck()  # then the sweep waits

    assert len(slack_env.calls("chat.postMessage")) == 2
    approval = SlackApproval.objects.get()
    assert (approval.ts, approval.post_attempts) == ("", 2)
    assert approval.next_post_at is not None
    listed = admin_client.get("/admin/integrations/slackapproval/?posted=no")
    assert listed.status_code == 200 and run.id in listed.content.decode()

    answer = admin_client.post("/admin/integrations/slackapproval/", {
        "action": "post_again", "_selected_action": [approval.pk]}, follow=True)

    assert answer.status_code == 200
    [post] = slack_env.posts
    approval.refresh_from_db()
    assert (approval.ts, approval.post_attempts, approval.post_error, approval.next_post_at) == (
        post["ts"], 3, "", None)


def test_an_unknown_channel_is_kept_as_the_error(slack_env, dispatcher, write_script):
    source = REVIEW.replace('"#approvals"', '"#nowhere"')

    run = start_run(write_script(source, "review.py"), input="otters")

    assert Run.objects.get(pk=run.id).status == Run.Status.PAUSED
    assert slack_env.posts == []
    assert SlackApproval.objects.get().post_error == (
        "Slack conversations.list failed: no channel named #nowhere is visible to the bot")


def test_a_step_without_a_channel_posts_nothing(slack_env, dispatcher, write_script):
    source = REVIEW.replace(',\n                                slack_channel="#approvals"', "")

    run = start_run(write_script(source, "review.py"), input="otters")

    assert Run.objects.get(pk=run.id).status == Run.Status.PAUSED
    assert slack_env.calls() == [] and not SlackApproval.objects.exists()


@pytest.mark.parametrize("channel", ["", "#", "  ", 5])
def test_slack_channel_must_be_a_non_empty_string(channel):
    with pytest.raises(PipelineDefinitionError, match=r"^human_in_the_loop 'review': "
                                                      r"slack_channel must be a non-empty"):
        Step.human_in_the_loop("review", message_for_user="ok?", slack_channel=channel)


@pytest.mark.parametrize(("approvers", "problem"), [
    ([], " must be a non-empty list of Slack user ids such as ['U0123ABCD'], got []"),
    ("U0ADA", " must be a non-empty list of Slack user ids such as ['U0123ABCD'], got 'U0ADA'"),
    (["U0ADA", ""], ": '' is not a Slack user id"),
    (["u0ada"], ": 'u0ada' is not a Slack user id"),
    (["@ada"], ": '@ada' is not a Slack user id"),
    (["C0APPROVE"], ": 'C0APPROVE' is not a Slack user id"),
    ([7], ": 7 is not a Slack user id"),
])
def test_slack_approvers_must_be_slack_user_ids(approvers, problem):
    with pytest.raises(PipelineDefinitionError) as raised:
        Step.human_in_the_loop("review", slack_channel="#approvals", slack_approvers=approvers)

    assert str(raised.value).startswith(f"human_in_the_loop 'review': slack_approvers{problem}")


def test_slack_approvers_need_a_slack_channel():
    with pytest.raises(PipelineDefinitionError, match=r"^human_in_the_loop 'review': "
                                                      r"slack_approvers needs slack_channel"):
        Step.human_in_the_loop("review", slack_approvers=["U0ADA"])


def test_slack_approvers_are_kept_on_the_step():
    review = Step.human_in_the_loop("review", slack_channel="#approvals",
                                    slack_approvers=["U0ADA", "W0BOB"])

    assert review.slack_approvers == ("U0ADA", "W0BOB")
    assert Step.human_in_the_loop("plain", slack_channel="#approvals").slack_approvers is None


# -- answering ---------------------------------------------------------------------------
def test_a_signed_approve_click_continues_the_run_and_records_the_user(paused, slack_env):
    [post] = slack_env.posts

    answer = click(post)

    assert answer.status_code == 200
    assert answer.json() == {"outcome": "approved", "message": "approved by ada"}
    run = wait_for_run(paused.id, statuses=set(Run.TERMINAL))
    assert (run.status, run.output) == (Run.Status.SUCCEEDED, "published (None)")
    assert StepRun.objects.get(run=run, key="review").decided_by == "slack:U0ADA"
    review = next(s for s in run_output(run.id)["steps"] if s["key"] == "review")
    assert review["decided_by"] == "slack:U0ADA"
    approval = SlackApproval.objects.get()
    assert (approval.status, approval.decided_by, approval.decided_by_name) == (
        "approved", "slack:U0ADA", "ada")
    assert approval.decided_at is not None
    [update] = slack_env.updates
    assert (update["channel"], update["ts"]) == (APPROVALS, post["ts"])
    assert action_ids(update["blocks"]) == []  # the buttons are gone
    assert texts(update["blocks"])[-1] == ":white_check_mark: Approved by <@U0ADA>"


def test_the_admin_shows_who_decided(paused, slack_env, admin_client):
    click(slack_env.posts[0])
    wait_for_run(paused.id, statuses=set(Run.TERMINAL))

    approvals = admin_client.get("/admin/integrations/slackapproval/").content.decode()
    run_page = admin_client.get(f"/admin/runs/run/{paused.id}/change/").content.decode()

    assert "U0ADA" in approvals and ">ada<" in approvals
    assert "slack:U0ADA" in run_page


def test_a_reject_click_fails_the_run_and_records_the_user(paused, slack_env):
    [post] = slack_env.posts

    answer = click(post, REJECT, user_id="U0BOB", username="bob")

    assert (answer.status_code, answer.json()["outcome"]) == (200, "rejected")
    run = Run.objects.get(pk=paused.id)
    assert run.status == Run.Status.FAILED
    assert run.error == {"step_key": "review", "type": "Rejected",
                         "message": "rejected: in Slack by bob (U0BOB)"}
    step = StepRun.objects.get(run=run, key="review")
    assert (step.status, step.decided_by) == ("failed", "slack:U0BOB")
    assert StepRun.objects.get(run=run, key="publish").status == "pending"
    approval = SlackApproval.objects.get()
    assert (approval.status, approval.decided_by, approval.decided_by_name) == (
        "rejected", "slack:U0BOB", "bob")
    [update] = slack_env.updates
    assert texts(update["blocks"])[-1] == ":x: Rejected by <@U0BOB>"


def test_a_second_click_changes_nothing_and_shows_the_decision(paused, slack_env):
    [post] = slack_env.posts
    click(post)
    wait_for_run(paused.id, statuses=set(Run.TERMINAL))

    answer = click(post, REJECT, user_id="U0BOB", username="bob")

    assert answer.status_code == 200
    assert answer.json() == {"outcome": "already_decided", "message": "already approved by ada"}
    run = Run.objects.get(pk=paused.id)
    assert (run.status, run.output) == (Run.Status.SUCCEEDED, "published (None)")
    approval = SlackApproval.objects.get()
    assert (approval.status, approval.decided_by) == ("approved", "slack:U0ADA")
    assert [texts(u["blocks"])[-1] for u in slack_env.updates] == [
        ":white_check_mark: Approved by <@U0ADA>"] * 2


def test_a_decision_elsewhere_closes_the_question_in_slack(paused, slack_env):
    [post] = slack_env.posts

    run_approve(run_id=paused.id, input="from the API", decided_by="api:ada")

    wait_until(lambda: slack_env.updates, "the Slack message is updated")
    [update] = slack_env.updates
    assert (update["channel"], update["ts"]) == (APPROVALS, post["ts"])
    assert action_ids(update["blocks"]) == []
    assert texts(update["blocks"])[-1] == ":white_check_mark: Approved by api:ada"
    approval = SlackApproval.objects.get()
    assert (approval.status, approval.decided_by, approval.decided_by_name) == (
        "approved", "api:ada", "")
    run = wait_for_run(paused.id, statuses=set(Run.TERMINAL))
    assert (run.status, run.output) == (Run.Status.SUCCEEDED, "published (from the API)")

    answer = click(post, REJECT)  # a click that was on its way

    assert answer.json() == {"outcome": "already_decided",
                             "message": "already approved by api:ada"}
    assert Run.objects.get(pk=run.id).status == Run.Status.SUCCEEDED
    assert StepRun.objects.get(run=run, key="review").decided_by == "api:ada"


def test_a_click_on_a_cancelled_run_changes_nothing(paused, slack_env):
    [post] = slack_env.posts
    run_cancel(run_id=paused.id)

    answer = click(post)

    assert (answer.status_code, answer.json()["outcome"]) == (200, "not_waiting")
    assert Run.objects.get(pk=paused.id).status == Run.Status.CANCELLED
    assert SlackApproval.objects.get().status == "pending"
    [update] = slack_env.updates
    assert texts(update["blocks"])[2] == (f"This run no longer waits for this approval: "
                                          f"run {paused.id} is cancelled, not paused.")


def test_the_rest_api_records_who_decided(paused, slack_env, staff):
    answer = token_client(staff).post(f"/api/runs/{paused.id}/reject", {"reason": "no"},
                                      format="json")

    assert answer.status_code == 200
    review = next(s for s in answer.json()["steps"] if s["key"] == "review")
    assert (review["status"], review["decided_by"]) == ("failed", "api:ada")
    assert SlackApproval.objects.get().decided_by == "api:ada"
    assert texts(slack_env.updates[0]["blocks"])[-1] == ":x: Rejected by api:ada"


def test_a_run_resumed_after_a_rejection_asks_again_in_a_new_message(paused, slack_env):
    [first] = slack_env.posts
    click(first, REJECT, user_id="U0BOB", username="bob")

    run_resume(run_id=paused.id)

    wait_for_run(paused.id, statuses={Run.Status.PAUSED})
    wait_until(lambda: len(slack_env.posts) == 2, "the question is asked again")
    second = slack_env.posts[1]
    approval = SlackApproval.objects.get()
    assert (approval.status, approval.decided_by, approval.ts) == ("pending", "", second["ts"])
    # The rejection is cleared with the run's error: the step waits for a new decision.
    assert StepRun.objects.get(run_id=paused.id, key="review").decided_by == ""

    click(second, user_id="U0ADA", username="ada")

    run = wait_for_run(paused.id, statuses=set(Run.TERMINAL))
    assert (run.status, run.output) == (Run.Status.SUCCEEDED, "published (None)")
    assert StepRun.objects.get(run=run, key="review").decided_by == "slack:U0ADA"


def test_a_click_on_the_earlier_message_closes_the_new_one_too(paused, slack_env):
    [first] = slack_env.posts
    click(first, REJECT, user_id="U0BOB", username="bob")
    run_resume(run_id=paused.id)
    wait_until(lambda: len(slack_env.posts) == 2, "the question is asked again")
    second = slack_env.posts[1]

    click(first, user_id="U0ADA", username="ada")

    run = wait_for_run(paused.id, statuses=set(Run.TERMINAL))
    assert run.status == Run.Status.SUCCEEDED
    closed = [(u["ts"], texts(u["blocks"])[-1]) for u in slack_env.updates[1:]]
    assert closed == [(first["ts"], ":white_check_mark: Approved by <@U0ADA>"),
                      (second["ts"], ":white_check_mark: Approved by <@U0ADA>")]


# -- who may decide ----------------------------------------------------------------------
APPROVERS = REVIEW.replace('slack_channel="#approvals")',
                           'slack_channel="#approvals",\n'
                           '                                slack_approvers=["U0ADA", "W0CAT"])')


@pytest.fixture
def guarded(slack_env, dispatcher, write_script) -> Run:
    """A run paused at a step that only U0ADA and W0CAT may decide from Slack."""
    run = start_run(write_script(APPROVERS, "review.py"), input="otters")
    run.refresh_from_db()
    assert (run.status, run.paused_step_key) == (Run.Status.PAUSED, "review")
    return run


def test_the_question_names_who_may_decide(guarded, slack_env):
    [post] = slack_env.posts

    assert texts(post["blocks"]) == [
        "Publish &lt;this&gt; &amp; that?",
        f"Workflow *review* · run `{guarded.id}` · step `review`",
        "Only <@U0ADA>, <@W0CAT> may decide this."]
    assert action_ids(post["blocks"]) == [APPROVE, REJECT]


def test_an_approver_approves(guarded, slack_env):
    answer = click(slack_env.posts[0], user_id="W0CAT", username="cat")

    assert answer.json() == {"outcome": "approved", "message": "approved by cat"}
    run = wait_for_run(guarded.id, statuses=set(Run.TERMINAL))
    assert (run.status, run.output) == (Run.Status.SUCCEEDED, "published (None)")
    assert StepRun.objects.get(run=run, key="review").decided_by == "slack:W0CAT"
    assert SlackApproval.objects.get().decided_by == "slack:W0CAT"


@pytest.mark.parametrize("action", [APPROVE, REJECT])
def test_anyone_else_changes_nothing_and_is_told_who_may(guarded, slack_env, caplog, action):
    [post] = slack_env.posts

    answer = click(post, action, user_id="U0BOB", username="bob")

    assert (answer.status_code, answer.json()) == (200, {
        "outcome": "not_allowed",
        "message": "Slack user U0BOB may not decide this approval; approvers: U0ADA, W0CAT"})
    run = Run.objects.get(pk=guarded.id)
    assert (run.status, run.paused_step_key, run.error) == (Run.Status.PAUSED, "review", None)
    step = StepRun.objects.get(run=run, key="review")
    assert (step.status, step.decided_by) == ("pending", "")
    approval = SlackApproval.objects.get()
    assert (approval.status, approval.decided_by, approval.decided_at) == ("pending", "", None)
    [update] = slack_env.updates
    assert (update["channel"], update["ts"]) == (APPROVALS, post["ts"])
    assert action_ids(update["blocks"]) == [APPROVE, REJECT]  # still answerable
    assert texts(update["blocks"])[3] == (
        "<@U0BOB> may not decide this; approvers: <@U0ADA>, <@W0CAT>")
    assert any("U0BOB" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)

    click(post, action, user_id="U0ADA", username="ada")  # an approver still can

    assert SlackApproval.objects.get().decided_by == "slack:U0ADA"


def test_the_approvers_are_those_of_the_runs_version(guarded, slack_env, write_script):
    # The script now lets U0BOB decide; the waiting run keeps the version it started with.
    edited = APPROVERS.replace('"W0CAT"]', '"W0CAT", "U0BOB"]')
    version, _ = workflow_version_from_path(write_script(edited, "review.py"))
    assert version.pk != guarded.version_id

    answer = click(slack_env.posts[0], user_id="U0BOB", username="bob")

    assert answer.json()["outcome"] == "not_allowed"
    assert SlackApproval.objects.get().status == "pending"


def test_the_api_decides_whatever_the_approvers(guarded, slack_env, staff):
    answer = token_client(staff).post(f"/api/runs/{guarded.id}/approve", {}, format="json")

    assert answer.status_code == 200
    run = wait_for_run(guarded.id, statuses=set(Run.TERMINAL))
    assert run.status == Run.Status.SUCCEEDED
    assert SlackApproval.objects.get().decided_by == "api:ada"
    assert texts(slack_env.updates[0]["blocks"])[-1] == ":white_check_mark: Approved by api:ada"


SCHEMA = '''
from pydantic import BaseModel

from flowops import Step, step


class Review(BaseModel):
    approved: bool{default}
    note: str = ""


@step
def draft(topic: str) -> str:
    return topic


@step
def publish(review: Review) -> str:
    return f"approved={{review.approved}} note={{review.note!r}}"


review = Step.human_in_the_loop("review", message_for_user="ok?", input_schema=Review,
                                slack_channel="#approvals")
pipeline = draft >> review >> publish
'''


def test_a_button_cannot_approve_a_schema_with_required_fields(slack_env, dispatcher,
                                                               write_script):
    run = start_run(write_script(SCHEMA.format(default=""), "review.py"), input="x")
    [post] = slack_env.posts

    answer = click(post)

    assert answer.json() == {"outcome": "refused", "message": "approval input does not fit "
                                                              "Review: approved: Field required"}
    run.refresh_from_db()
    assert (run.status, run.paused_step_key) == (Run.Status.PAUSED, "review")
    assert SlackApproval.objects.get().status == "pending"
    [update] = slack_env.updates
    assert action_ids(update["blocks"]) == [APPROVE, REJECT]  # still answerable
    assert texts(update["blocks"])[2].startswith(
        "<@U0ADA> could not approve from Slack: approval input does not fit Review: "
        "approved: Field required. Approve it with input: `python manage.py approve")


def test_a_button_approves_a_schema_with_its_defaults(slack_env, dispatcher, write_script):
    run = start_run(write_script(SCHEMA.format(default=" = True"), "review.py"), input="x")
    [post] = slack_env.posts

    click(post)

    run = wait_for_run(run.id, statuses=set(Run.TERMINAL))
    assert (run.status, run.output) == (Run.Status.SUCCEEDED, "approved=True note=''")


def test_a_click_for_an_unknown_run_answers_200_and_changes_nothing(paused, slack_env):
    [post] = slack_env.posts
    payload = click_payload(post)
    payload["actions"][0]["value"] = json.dumps({"run": "nope", "step": "review"})

    answer = send(form(payload))

    assert answer.status_code == 200
    assert answer.json() == {"outcome": "unknown", "message": "no Slack approval for run "
                                                              "'nope' at step 'review'; "
                                                              "nothing changed"}
    assert_nothing_changed(paused, slack_env)


def test_other_interactions_are_acknowledged_and_ignored(paused, slack_env):
    [post] = slack_env.posts
    other = click_payload(post)
    other["actions"][0]["action_id"] = "someone_elses_button"

    for payload in (other, {"type": "view_submission", "view": {}}):
        answer = send(form(payload))
        assert (answer.status_code, answer.json()) == (
            200, {"message": "nothing to do for this interaction"})
    assert_nothing_changed(paused, slack_env)


def assert_nothing_changed(run: Run, slack: FakeSlackServer) -> None:
    run = Run.objects.get(pk=run.id)
    assert (run.status, run.paused_step_key) == (Run.Status.PAUSED, "review")
    assert StepRun.objects.get(run=run, key="review").status == "pending"
    approval = SlackApproval.objects.get()
    assert (approval.status, approval.decided_by) == ("pending", "")
    assert slack.updates == []


STALE = int(time.time()) - 6 * 60
MISMATCH = "X-Slack-Signature does not match the body (check SLACK_SIGNING_SECRET)"


@pytest.mark.parametrize(("make", "status", "message"), [
    (lambda b: send(b, sign=False), 401,
     "X-Slack-Request-Timestamp is missing: the request is not signed"),
    (lambda b: send(b, signature="v0=" + "0" * 64), 401, MISMATCH),
    (lambda b: send(b, secret="another-secret"), 401, MISMATCH),
    (lambda b: send(b, timestamp=STALE), 401, "X-Slack-Request-Timestamp is more than 5 "
                                              "minutes from now (a replayed or delayed request)"),
    (lambda b: send(b, content_type="application/json"), 415,
     "Content-Type must be application/x-www-form-urlencoded, not application/json"),
    (lambda b: send(b + "&pad=" + "x" * MAX_BYTES), 413, f"body is over {MAX_BYTES} bytes"),
    (lambda b: send("payload="), 400, "form field 'payload' is missing"),
    (lambda b: send("other=1"), 400, "form field 'payload' is missing"),
    (lambda b: send(form("{not json")), 400, "payload is not JSON: Expecting property name "
                                             "enclosed in double quotes: line 1 column 2 "
                                             "(char 1)"),
    (lambda b: send(form("[1]")), 400, "payload must be a JSON object with a 'type'"),
    (lambda b: send(form({"type": "block_actions"})), 400,
     "block_actions payload has no 'actions' list"),
])
def test_bad_requests_are_refused_and_change_nothing(paused, slack_env, make, status, message):
    [post] = slack_env.posts

    answer = make(form(click_payload(post)))

    assert (answer.status_code, answer.json()) == (status, {"message": message})
    assert_nothing_changed(paused, slack_env)


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p["actions"][0].update(value="not json"), "action value is not a JSON object"),
    (lambda p: p["actions"][0].update(value='{"run": 1}'),
     "action value must name a 'run' and a 'step' (strings)"),
    (lambda p: p.pop("user"), "payload has no 'user' with an 'id'"),
])
def test_a_malformed_click_is_a_400_naming_the_problem(paused, slack_env, change, message):
    [post] = slack_env.posts
    payload = click_payload(post)
    change(payload)

    answer = send(form(payload))

    assert (answer.status_code, answer.json()) == (400, {"message": message})
    assert_nothing_changed(paused, slack_env)


def test_without_a_signing_secret_the_endpoint_is_unavailable(paused, slack_env, settings):
    [post] = slack_env.posts
    settings.SLACK_SIGNING_SECRET = ""

    answer = click(post)

    assert (answer.status_code, answer.json()) == (
        503, {"message": "SLACK_SIGNING_SECRET is not set: this server cannot verify "
                         "Slack's requests"})
    assert_nothing_changed(paused, slack_env)


def test_only_post_is_allowed():
    answer = Client().get(URL)
    assert (answer.status_code, answer.json()) == (
        405, {"message": "GET is not allowed; Slack POSTs interactions"})
