"""Webhooks: signed JSON deliveries start runs; every bad delivery stores nothing."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from apps.integrations.webhooks.services import (
    signature_for,
    webhook_issue,
    webhook_rotate,
    webhook_secret,
)
from apps.runs.models import Run
from apps.workflows.models import Event, Workflow
from apps.workflows.services.registry import workflow_register
from tests.integration.helpers import wait_for_run

pytestmark = pytest.mark.django_db(transaction=True)

HOOK = '''
from flowops import trigger

@trigger(integration="webhook")
def run(context):
    return {"order": context.payload["order"], "via": context.trigger.integration}
'''
URL = "/hooks/webhooks/orders/"


@pytest.fixture
def workflow(write_script) -> Workflow:
    registered = workflow_register(write_script(HOOK, "orders.py")).workflow
    webhook_issue(registered)
    return registered


def post(body: bytes | str, *, secret: str | None = None, content_type="application/json",
         **headers) -> object:
    raw = body.encode() if isinstance(body, str) else body
    if secret is not None:
        headers["HTTP_X_FLOWOPS_SIGNATURE"] = signature_for(secret, raw)
    return Client().post(URL, raw, content_type=content_type, **headers)


def nothing_stored() -> bool:
    return not Event.objects.exists() and not Run.objects.exists()


def test_a_signed_delivery_starts_a_run_with_the_body_as_payload(workflow):
    answer = post(json.dumps({"order": 7}), secret=webhook_secret(workflow))

    assert answer.status_code == 202
    [run_id] = answer.json()["runs"]
    run = wait_for_run(run_id, statuses=set(Run.TERMINAL))
    assert run.output == {"order": 7, "via": "webhook"}
    assert run.event.source == "webhook" and run.trigger.integration == "webhook"


def test_an_idempotency_key_answers_a_repeat_with_the_same_run(workflow):
    secret = webhook_secret(workflow)
    first = post('{"order": 1}', secret=secret, HTTP_IDEMPOTENCY_KEY="delivery-1")
    again = post('{"order": 1}', secret=secret, HTTP_IDEMPOTENCY_KEY="delivery-1")

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["runs"] == first.json()["runs"] and again.json()["duplicate"]
    assert Run.objects.count() == 1


@pytest.mark.parametrize(("body", "headers", "status", "message"), [
    ('{"order": 1}', {}, 401, "X-FlowOps-Signature is missing or does not match the body"),
    ('{"order": 1}', {"HTTP_X_FLOWOPS_SIGNATURE": "sha256=00"}, 401,
     "X-FlowOps-Signature is missing or does not match the body"),
    ("{not json", "sign", 400, "body is not JSON: Expecting property name enclosed in double "
                               "quotes: line 1 column 2 (char 1)"),
    ("[1, 2]", "sign", 400, "body must be a JSON object, not list"),
])
def test_bad_deliveries_are_refused_naming_the_problem(workflow, body, headers, status,
                                                       message):
    secret = webhook_secret(workflow) if headers == "sign" else None
    answer = post(body, secret=secret, **({} if headers == "sign" else headers))

    assert (answer.status_code, answer.json()) == (status, {"message": message})
    assert nothing_stored()


def test_wrong_type_size_method_and_workflow_are_refused(workflow, settings):
    secret = webhook_secret(workflow)
    settings.FLOWOPS_WEBHOOK_MAX_BYTES = 10

    too_big = post('{"order": 12345}', secret=secret)
    form = post("order=1", secret=secret, content_type="application/x-www-form-urlencoded")
    get = Client().get(URL)
    unknown = Client().post("/hooks/webhooks/nope/", "{}", content_type="application/json")

    assert (too_big.status_code, too_big.json()) == (413, {"message": "body is over 10 bytes"})
    assert form.status_code == 415
    assert form.json() == {"message": "Content-Type must be application/json, not "
                                      "application/x-www-form-urlencoded"}
    assert get.status_code == 405
    assert (unknown.status_code, unknown.json()) == (404, {"message": "no workflow 'nope'"})
    assert nothing_stored()


def test_a_workflow_without_a_webhook_trigger_is_not_found(write_script):
    workflow = workflow_register(write_script(HOOK.replace("webhook", "slack"), "orders.py")
                                 ).workflow

    answer = post("{}", secret=webhook_issue(workflow))

    assert answer.status_code == 404
    assert "has no active webhook trigger" in answer.json()["message"]
    assert nothing_stored()


def test_rotation_retires_the_old_secret(workflow, capsys):
    old = webhook_secret(workflow)
    new = webhook_rotate(workflow)

    assert new != old
    assert post('{"order": 1}', secret=old).status_code == 401
    assert post('{"order": 1}', secret=new).status_code == 202
    assert not Workflow.objects.filter(webhook_nonce__contains=new).exists()  # not stored

    call_command("webhook_secret", "orders", "--rotate")
    assert post('{"order": 1}', secret=new).status_code == 401
    assert post('{"order": 1}', secret=capsys.readouterr().out.strip()).status_code == 202


def test_a_secret_is_issued_once_and_shown_once(write_script, capsys):
    workflow = workflow_register(write_script(HOOK, "orders.py")).workflow
    unissued = post('{"order": 1}', secret=webhook_secret(workflow))
    assert unissued.status_code == 401
    assert "no webhook secret was issued for 'orders'" in unissued.json()["message"]

    call_command("webhook_secret", "orders")
    secret = capsys.readouterr().out.strip()
    with pytest.raises(CommandError, match="was issued already and is shown only once") as no:
        call_command("webhook_secret", "orders")

    assert no.value.returncode == 2
    assert post('{"order": 1}', secret=secret).status_code == 202
