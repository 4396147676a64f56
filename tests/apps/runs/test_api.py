"""The runs REST API: list with validated filters and pages, the run document, and
resume, cancel, approve and reject through the same services as the CLI, driven by the
background dispatcher (real commits, polled until the run moves)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from apps.runs.models import Run, RunBudget
from apps.workflows.models import Event
from tests.apps.api_fixtures import DOUBLE, FLAKY, REVIEW, wait_for

URL = "/api/runs/"


def start(api, slug: str, body: dict) -> dict:
    response = api.post(f"/api/workflows/{slug}/runs", body, format="json")
    assert response.status_code == 202, response.json()
    return response.json()


@pytest.fixture
def three_runs(api, register) -> list[str]:
    """Two runs of double and one of review, oldest first (pending: never committed)."""
    register(DOUBLE, "double")
    register(REVIEW, "review")
    return [start(api, "double", {"input": 1})["id"], start(api, "review", {"input": "x"})["id"],
            start(api, "double", {"input": 2})["id"]]


# -- list --------------------------------------------------------------------------------
def ids(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [r["id"] for r in response.json()["results"]]


def test_list_is_newest_first_and_filters_by_workflow_and_status(api, three_runs):
    first, review, last = three_runs
    Run.objects.filter(pk=first).update(status=Run.Status.FAILED)

    assert ids(api.get(URL)) == [last, review, first]
    assert ids(api.get(URL, {"workflow": "double"})) == [last, first]
    assert ids(api.get(URL, {"status": "failed"})) == [first]
    assert ids(api.get(URL, {"workflow": "double", "status": "running"})) == [last]


def test_list_pages_with_links(api, three_runs):
    response = api.get(URL, {"limit": 2})
    body = response.json()
    assert body["count"] == 3 and len(body["results"]) == 2
    assert body["next"] == "http://testserver/api/runs/?limit=2&offset=2"
    assert body["previous"] is None
    second = api.get(body["next"]).json()
    assert [r["id"] for r in second["results"]] == [three_runs[0]]
    assert second["next"] is None
    assert second["previous"] == "http://testserver/api/runs/?limit=2&offset=0"


def test_list_items_are_summaries_with_a_link(api, three_runs):
    item = api.get(URL).json()["results"][0]
    assert set(item) == {"id", "workflow", "version", "status", "error", "parent",
                         "created_at", "started_at", "finished_at", "links"}
    assert item["links"]["self"] == f"/api/runs/{three_runs[-1]}"


@pytest.mark.parametrize(("params", "name", "message"), [
    ({"status": "done"}, "status", '"done" is not a valid choice.'),
    ({"workflow": "nope"}, "workflow", "no workflow named 'nope'"),
    ({"limit": "0"}, "limit", "Ensure this value is greater than or equal to 1."),
    ({"limit": "201"}, "limit", "Ensure this value is less than or equal to 200."),
    ({"limit": "x"}, "limit", "A valid integer is required."),
    ({"offset": "-1"}, "offset", "Ensure this value is greater than or equal to 0."),
    ({"state": "failed"}, "state", "unknown field"),
    ({"status": ["failed", "paused"]}, "status", "given more than once"),
])
def test_list_refuses_bad_parameters_by_name(api, three_runs, params, name, message):
    response = api.get(URL, params)
    assert response.status_code == 400
    assert response.json()["errors"] == {name: message}


# -- one run -----------------------------------------------------------------------------
def test_detail_is_404_for_an_unknown_run(api, db):
    response = api.get(f"{URL}nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "No run with id 'nope'."}


def test_a_run_ends_and_its_document_shows_steps_spend_and_origin(dispatcher, api, register):
    register(DOUBLE, "double")
    started = start(api, "double", {"input": 21, "budget": {"usd": "0.25"}})

    wait_for(started["id"])
    body = api.get(f"{URL}{started['id']}").json()

    assert body["status"] == "succeeded"
    assert body["input"] == 21
    assert body["output"] == "got 42"
    assert body["error"] is None
    assert [(s["key"], s["status"], s["attempts"], s["output"]) for s in body["steps"]] == [
        ("double", "succeeded", 1, 42), ("describe", "succeeded", 1, "got 42")]
    assert all(s["started_at"] and s["finished_at"] and s["duration_ms"] >= 0
               for s in body["steps"])
    assert body["spend"] == {"usd": "0", "tokens": 0, "limit_usd": "0.25",
                             "limit_tokens": None, "unsettled_usd": "0", "unsettled_tokens": 0}
    event = Event.objects.get()
    assert body["event"]["id"] == event.id and body["event"]["source"] == "api"
    assert body["trigger"] is None and body["parent"] is None
    assert body["started_at"] and body["finished_at"]


# -- approve and reject ------------------------------------------------------------------
def test_approve_continues_a_paused_run_in_the_background(dispatcher, api, register):
    register(REVIEW, "review")
    run_id = start(api, "review", {"input": "otters"})["id"]
    paused = wait_for(run_id)
    assert paused.status == "paused"
    shown = api.get(f"{URL}{run_id}").json()
    assert shown["paused_step_key"] == "review"
    assert shown["pause_message"] == "Check the draft"

    response = api.post(f"{URL}{run_id}/approve",
                        {"input": {"approved": True, "note": "fine"}}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "running"
    assert wait_for(run_id, {"succeeded", "failed"}).output == "published (fine)"


def test_approve_refuses_input_that_does_not_fit_and_keeps_the_run_paused(dispatcher, api,
                                                                           register):
    register(REVIEW, "review")
    run_id = start(api, "review", {"input": "otters"})["id"]
    wait_for(run_id)

    response = api.post(f"{URL}{run_id}/approve", {"input": {"approved": "maybe"}},
                        format="json")

    assert response.status_code == 400
    assert "approved" in response.json()["errors"]["input"]
    assert Run.objects.get(pk=run_id).status == "paused"


def test_reject_fails_the_run_with_the_reason(dispatcher, api, register):
    register(REVIEW, "review")
    run_id = start(api, "review", {"input": "otters"})["id"]
    wait_for(run_id)

    response = api.post(f"{URL}{run_id}/reject", {"reason": "off topic"}, format="json")

    assert response.status_code == 200
    assert response.json()["status"] == "failed"
    assert response.json()["error"]["message"] == "rejected: off topic"


def test_reject_needs_a_reason(api, three_runs):
    response = api.post(f"{URL}{three_runs[1]}/reject", {}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"reason": "This field is required."}


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_answering_a_run_that_is_not_paused_is_a_409(api, three_runs, action):
    run_id = three_runs[0]
    response = api.post(f"{URL}{run_id}/{action}", {"reason": "no"} if action == "reject"
                        else {}, format="json")
    assert response.status_code == 409
    assert response.json() == {"message": f"run {run_id} is running, not paused",
                               "status": "running"}
    assert Run.objects.get(pk=run_id).status == "running"


# -- cancel ------------------------------------------------------------------------------
def test_cancel_then_cancel_again_is_a_409(api, three_runs):
    run_id = three_runs[0]

    response = api.post(f"{URL}{run_id}/cancel")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert {s["status"] for s in response.json()["steps"]} == {"cancelled"}
    again = api.post(f"{URL}{run_id}/cancel")
    assert again.status_code == 409
    assert again.json() == {"message": f"run {run_id} is already cancelled"}


# -- resume ------------------------------------------------------------------------------
def test_resume_continues_a_failed_run_with_a_new_budget(dispatcher, api, register):
    register(FLAKY, "flaky")
    run_id = start(api, "flaky", {"input": 1, "budget": {"tokens": 100}})["id"]
    failed = wait_for(run_id)
    assert failed.status == "failed", failed.error

    response = api.post(f"{URL}{run_id}/resume", {"budget": {"usd": "2.5", "tokens": 500}},
                        format="json")

    assert response.status_code == 200, response.json()
    assert wait_for(run_id, {"succeeded"}).output == 2
    budget = RunBudget.objects.get(run_id=run_id)
    assert (budget.limit_usd, budget.limit_tokens) == (Decimal("2.5"), 500)


def test_resume_of_a_succeeded_run_is_a_409(dispatcher, api, register):
    register(DOUBLE, "double")
    run_id = start(api, "double", {"input": 1})["id"]
    wait_for(run_id)

    response = api.post(f"{URL}{run_id}/resume", {}, format="json")

    assert response.status_code == 409
    assert response.json() == {"message": f"run {run_id} is succeeded; nothing to resume"}


def test_resume_refuses_a_limit_below_the_spend_naming_the_field(api, three_runs):
    run_id = three_runs[0]
    RunBudget.objects.filter(run_id=run_id).update(spent_tokens=50)

    response = api.post(f"{URL}{run_id}/resume", {"budget": {"tokens": 10}}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == {
        "budget.tokens": f"budget.tokens 10 is below what run {run_id} has used or holds (50)"}
    assert RunBudget.objects.get(run_id=run_id).limit_tokens is None


def test_resume_refuses_a_bad_budget(api, three_runs):
    response = api.post(f"{URL}{three_runs[0]}/resume", {"budget": {"usd": "0"}},
                        format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"budget.usd": "must be greater than 0"}


# -- every run endpoint: 404 and 401 ------------------------------------------------------
@pytest.mark.parametrize("action", ["resume", "cancel", "approve", "reject"])
def test_actions_on_an_unknown_run_are_404(api, db, action):
    response = api.post(f"{URL}nope/{action}", {"reason": "x"}, format="json")
    assert response.status_code == 404
    assert response.json() == {"detail": "No run with id 'nope'."}


def test_anonymous_requests_get_401(three_runs):
    client = APIClient()
    run_id = three_runs[0]
    assert client.get(URL).status_code == 401
    assert client.get(f"{URL}{run_id}").status_code == 401
    for action in ("resume", "cancel", "approve", "reject"):
        assert client.post(f"{URL}{run_id}/{action}", {}, format="json").status_code == 401
    assert Run.objects.get(pk=run_id).status == "running"
