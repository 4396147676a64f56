"""The workflows REST API against the real database: listing, showing and uploading
workflows, and starting runs with input, context, budget and Idempotency-Key; every
refusal names its field and stores nothing."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection
from rest_framework.test import APIClient

from apps.runs.models import Run, RunBudget, StepRun
from apps.workflows.models import Event, Trigger, Workflow, WorkflowVersion
from tests.apps.api_fixtures import DOUBLE, ECHO_SCRIPT, token_client, wait_for

URL = "/api/workflows/"


def runs_url(slug: str) -> str:
    return f"{URL}{slug}/runs"


@pytest.fixture
def double(register) -> Workflow:
    return register(DOUBLE, "double")


def stored() -> tuple[int, int, int, int]:
    return (Run.objects.count(), Event.objects.count(), RunBudget.objects.count(),
            StepRun.objects.count())


# -- reading -----------------------------------------------------------------------------
def test_list_shows_each_workflow_with_its_active_version_and_triggers(api, register):
    double = register(DOUBLE, "double")
    echo = register(ECHO_SCRIPT, "echo")

    response = api.get(URL)

    assert response.status_code == 200
    by_slug = {w["slug"]: w for w in response.json()}
    assert by_slug["double"]["active_version"]["sha256"] == double.active_version.sha256
    assert by_slug["double"]["active_version"]["kind"] == "pipeline"
    assert by_slug["double"]["triggers"] == []
    assert by_slug["echo"]["active_version"]["kind"] == "script"
    trigger = Trigger.objects.get(workflow=echo)
    assert by_slug["echo"]["triggers"] == [{"id": trigger.id, "integration": "webhook",
                                            "event": "received", "options": {},
                                            "line": trigger.line}]
    assert by_slug["echo"]["links"] == {"self": "/api/workflows/echo",
                                        "runs": "/api/workflows/echo/runs"}


def test_detail_shows_one_workflow_and_404_names_an_unknown_one(api, double):
    response = api.get(f"{URL}double")
    assert response.status_code == 200
    assert response.json()["slug"] == "double"
    assert response.json()["active_version"]["sha256"] == double.active_version.sha256

    missing = api.get(f"{URL}nope")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "No workflow named 'nope'."}


# -- uploading ---------------------------------------------------------------------------
def test_staff_upload_registers_the_source_as_the_active_version(admin_api):
    response = admin_api.post(URL, {"source": ECHO_SCRIPT}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["slug"] == "echo"  # from the script's module-level name
    workflow = Workflow.objects.get(slug="echo")
    assert body["active_version"]["sha256"] == workflow.active_version.sha256
    assert workflow.active_version.source == ECHO_SCRIPT
    assert [t["integration"] for t in body["triggers"]] == ["webhook"]


def test_upload_takes_an_explicit_slug(admin_api):
    response = admin_api.post(URL, {"source": DOUBLE, "slug": "doubler"}, format="json")
    assert response.status_code == 201, response.json()
    assert Workflow.objects.get(slug="doubler").active_version.entry == "pipeline"


def test_upload_refuses_a_script_error_with_its_line_and_reason(admin_api):
    source = "from flowops import step\n\n\ndef broken(:\n    pass\n"

    response = admin_api.post(URL, {"source": source, "slug": "broken"}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["line"] == 4
    assert body["reason"].startswith("syntax error")
    assert body["errors"]["source"] == f"line 4: {body['reason']}"
    assert not Workflow.objects.exists()
    assert not WorkflowVersion.objects.exists()


def test_upload_refuses_a_bad_trigger_naming_its_line(admin_api):
    source = ("from flowops import trigger\n\n"
              "@trigger(integration='fax')\ndef run(context):\n    return 1\n")

    response = admin_api.post(URL, {"source": source, "slug": "fax"}, format="json")

    assert response.status_code == 400
    assert response.json()["line"] == 3
    assert "unknown integration 'fax'" in response.json()["reason"]
    assert not Workflow.objects.exists()


def test_upload_without_slug_or_name_asks_for_a_slug(admin_api):
    response = admin_api.post(URL, {"source": DOUBLE}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "slug": "required when the script sets no module-level name"}
    assert not Workflow.objects.exists()


@pytest.mark.parametrize(("body", "field"), [
    ({}, "source"),
    ({"source": DOUBLE, "slug": "Not A Slug"}, "slug"),
    ({"source": DOUBLE, "slug": "ok", "extra": 1}, "extra"),
])
def test_upload_refuses_bad_fields_by_name(admin_api, body, field):
    response = admin_api.post(URL, body, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not Workflow.objects.exists()


def test_upload_is_for_staff_only(api):
    response = api.post(URL, {"source": DOUBLE, "slug": "x"}, format="json")
    assert response.status_code == 403
    assert not Workflow.objects.exists()


def test_anonymous_requests_get_401_and_store_nothing(double):
    client = APIClient()
    assert client.get(URL).status_code == 401
    assert client.get(f"{URL}double").status_code == 401
    assert client.post(URL, {"source": DOUBLE, "slug": "x"}, format="json").status_code == 401
    response = client.post(runs_url("double"), {"input": 2}, format="json")
    assert response.status_code == 401
    assert response.json()["detail"] == "Authentication credentials were not provided."
    assert response["WWW-Authenticate"] == "Token"
    assert stored() == (0, 0, 0, 0)


def test_session_auth_is_accepted(double, member):
    client = APIClient()
    client.login(username="bob", password="pw")
    assert client.get(f"{URL}double").status_code == 200


# -- starting a run ----------------------------------------------------------------------
def test_start_answers_202_with_the_pending_run_and_its_links(api, double):
    response = api.post(runs_url("double"), {"input": 21}, format="json")

    assert response.status_code == 202, response.json()
    body = response.json()
    run = Run.objects.get()
    assert body["id"] == run.id
    assert body["status"] == "running"  # queued for the dispatcher after commit
    assert body["input"] == 21
    assert body["workflow"] == "double"
    assert body["version"] == double.active_version.sha256
    assert body["links"]["self"] == f"/api/runs/{run.id}"
    assert body["links"]["approve"] == f"/api/runs/{run.id}/approve"
    assert response["Location"] == f"/api/runs/{run.id}"
    assert body["event"]["source"] == "api"
    assert run.event.source == "api" and run.event.workflow == double


def test_start_sets_the_budget_exactly(api, double):
    response = api.post(runs_url("double"),
                        {"input": 1, "budget": {"usd": "0.50", "tokens": 10000}}, format="json")

    assert response.status_code == 202, response.json()
    budget = RunBudget.objects.get()
    assert (budget.limit_usd, budget.limit_tokens) == (Decimal("0.5"), 10000)
    assert response.json()["spend"] == {"usd": "0", "tokens": 0, "limit_usd": "0.5",
                                        "limit_tokens": 10000, "unsettled_usd": "0",
                                        "unsettled_tokens": 0}


@pytest.mark.parametrize(("usd", "limit"), [
    (0.1, Decimal("0.1")),  # a JSON number is read as written, not as a binary float
    ("999999.99999999", Decimal("999999.99999999")),
    ("0.00000001", Decimal("0.00000001")),
])
def test_start_takes_usd_limits_at_the_bounds_exactly(api, double, usd, limit):
    response = api.post(runs_url("double"), {"input": 1, "budget": {"usd": usd}}, format="json")
    assert response.status_code == 202, response.json()
    assert RunBudget.objects.get().limit_usd == limit


def test_start_takes_the_largest_token_limit(api, double):
    response = api.post(runs_url("double"), {"input": 1, "budget": {"tokens": 2**63 - 1}},
                        format="json")
    assert response.status_code == 202, response.json()
    assert RunBudget.objects.get().limit_tokens == 2**63 - 1


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"input": "two"}, "input", "input does not fit int"),
    ({}, "input", "input does not fit int"),
    ({"input": 1, "context": [1]}, "context", "must be a JSON object"),
    ({"input": 1, "context": "x"}, "context", "must be a JSON object"),
    ({"input": 1, "budget": {"usd": "0"}}, "budget.usd", "must be greater than 0"),
    ({"input": 1, "budget": {"usd": -1}}, "budget.usd", "must be greater than 0"),
    ({"input": 1, "budget": {"usd": "1000000"}}, "budget.usd", "must be less than 1000000"),
    ({"input": 1, "budget": {"usd": "0.000000001"}}, "budget.usd", "at most 8 decimal"),
    ({"input": 1, "budget": {"usd": "NaN"}}, "budget.usd", "valid number"),
    ({"input": 1, "budget": {"usd": "Infinity"}}, "budget.usd", "valid number"),
    ({"input": 1, "budget": {"usd": True}}, "budget.usd", "valid number"),
    ({"input": 1, "budget": {"usd": "lots"}}, "budget.usd", "valid number"),
    ({"input": 1, "budget": {"tokens": 0}}, "budget.tokens", "greater than or equal to 1"),
    ({"input": 1, "budget": {"tokens": 2**63}}, "budget.tokens", "less than or equal to"),
    ({"input": 1, "budget": {"tokens": 1.5}}, "budget.tokens", "valid integer"),
    ({"input": 1, "budget": {"usd_limit": 1}}, "budget.usd_limit", "unknown field"),
    ({"input": 1, "budget": 5}, "budget", "Expected a dictionary"),
    ({"input": 1, "inputs": 1}, "inputs", "unknown field"),
])
def test_start_refuses_bad_input_naming_the_field_and_stores_nothing(api, double, body, field,
                                                                      message):
    response = api.post(runs_url("double"), body, format="json")

    assert response.status_code == 400, response.json()
    errors = response.json()["errors"]
    assert message in errors[field], errors
    assert field in response.json()["message"]
    assert stored() == (0, 0, 0, 0)


def test_start_refuses_a_body_that_is_not_a_json_object(api, double):
    for body in ("[1, 2]", "{not json"):
        response = api.post(runs_url("double"), body, content_type="application/json")
        assert response.status_code == 400
        assert "body" in response.json()["errors"]
    form = api.post(runs_url("double"), {"input": "1"})  # multipart
    assert form.status_code == 415
    assert stored() == (0, 0, 0, 0)


def test_start_of_an_unknown_workflow_is_404(api, double):
    response = api.post(runs_url("nope"), {"input": 1}, format="json")
    assert response.status_code == 404
    assert response.json() == {"detail": "No workflow named 'nope'."}
    assert stored() == (0, 0, 0, 0)


def test_start_runs_the_active_version_not_the_latest(api, register, double):
    newer = WorkflowVersion.objects.create(workflow=double, sha256="f" * 64,
                                           source=DOUBLE + "\n# newer\n")
    assert double.versions.order_by("-created_at").first() == newer

    response = api.post(runs_url("double"), {"input": 1}, format="json")

    assert response.json()["version"] == double.active_version.sha256


def test_a_script_gets_the_input_as_its_payload(api, register):
    register(ECHO_SCRIPT, "echo")

    response = api.post(runs_url("echo"), {"input": {"order": 7}}, format="json")

    assert response.status_code == 202, response.json()
    assert response.json()["input"] == {
        "trigger": {"integration": "api", "event": None, "id": None},
        "message": None, "payload": {"order": 7}}


# -- Idempotency-Key ---------------------------------------------------------------------
def test_same_key_and_body_answers_the_first_run_and_starts_nothing(api, double):
    first = api.post(runs_url("double"), {"input": 4, "context": {}}, format="json",
                     HTTP_IDEMPOTENCY_KEY="order-1")
    # The same JSON document, written differently.
    again = api.post(runs_url("double"), '{"context": {},  "input": 4}',
                     content_type="application/json", HTTP_IDEMPOTENCY_KEY="order-1")

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Run.objects.count() == 1
    assert Event.objects.get().key == "double:order-1"


def test_same_key_with_another_body_is_a_409_naming_the_key(api, double):
    first = api.post(runs_url("double"), {"input": 4}, format="json",
                     HTTP_IDEMPOTENCY_KEY="order-1")

    response = api.post(runs_url("double"), {"input": 5}, format="json",
                        HTTP_IDEMPOTENCY_KEY="order-1")

    assert response.status_code == 409
    assert response.json() == {
        "message": "Idempotency-Key 'order-1' was already used for workflow 'double' with a "
                   "different body",
        "idempotency_key": "order-1"}
    assert list(Run.objects.values_list("id", flat=True)) == [first.json()["id"]]


def test_keys_are_scoped_per_workflow(api, register, double):
    register(DOUBLE.replace("* 2", "* 3"), "triple")

    one = api.post(runs_url("double"), {"input": 4}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    two = api.post(runs_url("triple"), {"input": 4}, format="json", HTTP_IDEMPOTENCY_KEY="k")

    assert (one.status_code, two.status_code) == (202, 202)
    assert one.json()["id"] != two.json()["id"]


def test_a_refused_request_does_not_use_up_its_key(api, double):
    refused = api.post(runs_url("double"), {"input": "x"}, format="json",
                       HTTP_IDEMPOTENCY_KEY="k")
    accepted = api.post(runs_url("double"), {"input": 1}, format="json",
                        HTTP_IDEMPOTENCY_KEY="k")
    assert (refused.status_code, accepted.status_code) == (400, 202)
    assert Run.objects.count() == 1


@pytest.mark.parametrize("key", ["", "a b", "x" * 129, "é"])
def test_a_malformed_key_is_refused(api, double, key):
    response = api.post(runs_url("double"), {"input": 1}, format="json",
                        HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["errors"]
    assert stored() == (0, 0, 0, 0)


def test_concurrent_requests_with_one_key_start_one_run(dispatcher, member, register):
    register(DOUBLE, "double")
    clients = [token_client(member) for _ in range(8)]
    together = threading.Barrier(len(clients))
    responses = [None] * len(clients)

    def post(index: int) -> None:
        try:
            together.wait(timeout=10)
            responses[index] = clients[index].post(
                runs_url("double"), {"input": 3}, format="json", HTTP_IDEMPOTENCY_KEY="once")
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(r.status_code for r in responses) == [200] * 7 + [202]
    assert len({r.json()["id"] for r in responses}) == 1
    run = wait_for(responses[0].json()["id"])
    assert run.status == "succeeded" and run.output == "got 6"
    assert Run.objects.count() == 1 and Event.objects.count() == 1


def test_a_script_run_reads_the_input_as_context_payload(dispatcher, api, register):
    register(ECHO_SCRIPT, "echo")

    response = api.post(runs_url("echo"), {"input": {"order": 7}}, format="json")

    run = wait_for(response.json()["id"])
    assert run.status == "succeeded", run.error
    assert run.output == {"payload": {"order": 7}, "integration": "api"}
