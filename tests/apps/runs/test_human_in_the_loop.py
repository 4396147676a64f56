"""Human in the loop: pause, approve (validated), reject, cancel (CONTRACTS.md §1)."""

from __future__ import annotations

import pytest

from apps.core.exceptions import ApplicationError
from apps.runs.models import Run, StepRun
from apps.runs.services.runs import run_approve, run_cancel, run_reject, run_resume
from tests.apps.runs.conftest import EMBEDDED, statuses, steps_of

pytestmark = EMBEDDED

REVIEW = '''
from pydantic import BaseModel

from flowops import PipelineContext, Step, step

CALLS = []


class Ctx(PipelineContext):
    drafts: int = 0


context_model = Ctx


class Review(BaseModel):
    approved: bool
    note: str = ""


@step
def draft(topic: str, context: Ctx) -> str:
    CALLS.append("draft")
    context.drafts += 1
    return f"A post about {topic}"


@step
def publish(review: Review, context: Ctx) -> str:
    CALLS.append("publish")
    verdict = "published" if review.approved else "shelved"
    return f"{verdict} ({review.note}) after {context.drafts} draft(s)"


review = Step.human_in_the_loop("review", message_for_user="Check the draft",
                                input_schema=Review)
pipeline = draft >> review >> publish
'''


@pytest.fixture
def paused(make_flow):
    flow = make_flow(REVIEW)
    run = flow.run("otters")
    return flow, run


def test_a_human_step_pauses_the_run(paused):
    flow, run = paused

    assert run.status == Run.Status.PAUSED
    assert (run.paused_step_key, run.pause_message) == ("review", "Check the draft")
    assert (run.output, run.error, run.finished_at) == (None, None, None)
    assert statuses(run) == {"draft": "succeeded", "review": "pending", "publish": "pending"}
    assert flow.module.CALLS == ["draft"]


def test_approve_continues_with_the_validated_input(paused):
    flow, run = paused

    approved = run_approve(run_id=run.id, input={"approved": True, "note": "lovely"})

    assert approved.status == Run.Status.SUCCEEDED  # embedded: driven to the end on commit
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED
    assert run.output == "published (lovely) after 1 draft(s)"
    assert (run.paused_step_key, run.pause_message) == ("", "")
    rows = steps_of(run)
    assert (rows["review"].status, rows["review"].output) == (
        "succeeded", {"approved": True, "note": "lovely"})
    # The human step passes the context on: publish saw the draft's change.
    assert rows["review"].context["drafts"] == 1
    assert flow.module.CALLS == ["draft", "publish"]


def test_approve_with_input_that_does_not_fit_the_schema_keeps_the_run_paused(paused):
    flow, run = paused

    with pytest.raises(ApplicationError) as caught:
        run_approve(run_id=run.id, input={"note": "no verdict"})

    assert caught.value.message == "approval input does not fit Review: approved: Field required"
    assert [(e["loc"], e["type"]) for e in caught.value.extra["errors"]] == [
        (("approved",), "missing")]
    run.refresh_from_db()
    assert (run.status, run.paused_step_key) == (Run.Status.PAUSED, "review")
    assert statuses(run) == {"draft": "succeeded", "review": "pending", "publish": "pending"}
    assert steps_of(run)["review"].output is None
    assert flow.module.CALLS == ["draft"]


def test_the_approval_error_names_the_field(paused):
    _, run = paused

    with pytest.raises(ApplicationError) as caught:
        run_approve(run_id=run.id, input={"note": "no verdict"})

    assert "approved" in caught.value.message


def test_approve_with_a_wrong_type_names_the_problem(paused):
    _, run = paused

    with pytest.raises(ApplicationError, match=r"^approval input does not fit Review: "
                                               r"approved: Input should be a valid boolean"):
        run_approve(run_id=run.id, input={"approved": "perhaps"})

    run.refresh_from_db()
    assert run.status == Run.Status.PAUSED


def test_approve_after_a_bad_input_still_works(paused):
    flow, run = paused
    with pytest.raises(ApplicationError):
        run_approve(run_id=run.id, input="yes")

    run_approve(run_id=run.id, input={"approved": False, "note": "later"})

    run.refresh_from_db()
    assert (run.status, run.output) == (Run.Status.SUCCEEDED, "shelved (later) after 1 draft(s)")


def test_reject_fails_the_run_with_the_reason(paused):
    flow, run = paused

    rejected = run_reject(run_id=run.id, reason="off topic")

    assert rejected.status == Run.Status.FAILED
    assert rejected.error == {"step_key": "review", "type": "Rejected",
                              "message": "rejected: off topic"}
    assert rejected.finished_at is not None
    rows = steps_of(rejected)
    assert (rows["review"].status, rows["review"].error) == (
        "failed", {"type": "Rejected", "message": "rejected: off topic", "traceback": ""})
    assert rows["publish"].status == "pending"
    assert flow.module.CALLS == ["draft"]


def test_a_rejected_run_cannot_be_approved(paused):
    _, run = paused
    run_reject(run_id=run.id, reason="no")

    with pytest.raises(ApplicationError, match=r"is failed, not paused"):
        run_approve(run_id=run.id, input={"approved": True})

    run.refresh_from_db()
    assert run.error["message"] == "rejected: no"


def test_cancel_a_paused_run(paused):
    flow, run = paused

    cancelled = run_cancel(run_id=run.id)

    assert cancelled.status == Run.Status.CANCELLED
    assert cancelled.finished_at is not None
    assert statuses(run) == {"draft": "succeeded", "review": "cancelled",
                             "publish": "cancelled"}
    with pytest.raises(ApplicationError, match=r"is cancelled, not paused"):
        run_approve(run_id=run.id, input={"approved": True})
    with pytest.raises(ApplicationError, match=r"is already cancelled"):
        run_cancel(run_id=run.id)
    with pytest.raises(ApplicationError, match=r"is cancelled; nothing to resume"):
        run_resume(run_id=run.id)
    assert flow.module.CALLS == ["draft"]


def test_a_paused_run_is_not_resumed(paused):
    _, run = paused

    with pytest.raises(ApplicationError, match=r"waits for approval at review; use approve"):
        run_resume(run_id=run.id)

    run.refresh_from_db()
    assert run.status == Run.Status.PAUSED


def test_approve_and_reject_refuse_a_run_that_is_not_paused(make_flow):
    flow = make_flow('''
    from flowops import step

    @step
    def done(x: int) -> int:
        return x

    pipeline = done
    ''')
    run = flow.run(1)

    with pytest.raises(ApplicationError, match=r"is succeeded, not paused"):
        run_approve(run_id=run.id, input=None)
    with pytest.raises(ApplicationError, match=r"is succeeded, not paused"):
        run_reject(run_id=run.id, reason="x")
    with pytest.raises(ApplicationError, match=r"^no run with id 'nope'$"):
        run_approve(run_id="nope")


def test_without_a_schema_any_input_is_the_output(make_flow):
    flow = make_flow('''
    from flowops import Step, step

    @step
    def ask(x: int) -> int:
        return x

    @step
    def use(answer) -> list:
        return [answer]

    pipeline = ask >> Step.human_in_the_loop("confirm", message="ok?") >> use
    ''')
    run = flow.run(1)
    assert (run.status, run.pause_message) == (Run.Status.PAUSED, "ok?")

    run_approve(run_id=run.id, input={"free": ["form", 1]})

    run.refresh_from_db()
    assert (run.status, run.output) == (Run.Status.SUCCEEDED, [{"free": ["form", 1]}])


def test_two_human_steps_pause_twice(make_flow):
    flow = make_flow('''
    from flowops import Step, step

    @step
    def start(x: str) -> str:
        return x

    @step
    def finish(answer: str) -> str:
        return answer + "!"

    pipeline = (start >> Step.human_in_the_loop("first", message="1")
                >> Step.human_in_the_loop("second", message="2") >> finish)
    ''')
    run = flow.run("go")

    run_approve(run_id=run.id, input="a")
    run.refresh_from_db()
    assert (run.status, run.paused_step_key, run.pause_message) == (
        Run.Status.PAUSED, "second", "2")

    run_approve(run_id=run.id, input="b")
    run.refresh_from_db()
    assert (run.status, run.output) == (Run.Status.SUCCEEDED, "b!")
    assert StepRun.objects.filter(run_id=run.id, key="first").get().output == "a"


def test_a_human_step_inside_a_parallel_pauses_the_whole_run(make_flow):
    flow = make_flow('''
    from flowops import Step, step

    @step
    def inc(x: int) -> int:
        return x + 1

    ask = Step.human_in_the_loop("ask", message="number?")
    pipeline = Step.parallel("fan", {"a": inc, "h": ask >> inc, "z": inc}, max_concurrency=1)
    ''')
    run = flow.run(1)
    assert (run.status, run.paused_step_key) == (Run.Status.PAUSED, "fan/h/ask")
    assert statuses(run) == {"fan": "pending", "fan/a/inc": "succeeded",
                             "fan/h/ask": "pending", "fan/h/inc": "pending",
                             "fan/z/inc": "pending"}

    run_approve(run_id=run.id, input=10)

    run.refresh_from_db()
    assert (run.status, run.output) == (Run.Status.SUCCEEDED, {"a": 2, "h": 11, "z": 2})
    assert steps_of(run)["fan/a/inc"].attempt == 1
