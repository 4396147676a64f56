"""The admin of event-driven workflows: settings without plain secrets, triggers, events,
webhook secret rotation and registering a script (staff only)."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from apps.integrations.webhooks.services import signature_for, webhook_issue, webhook_secret
from apps.runs.models import Run
from apps.workflows.models import Event, Trigger, Workflow, WorkflowVersion
from apps.workflows.services.registry import workflow_register_source
from tests.apps.workflows.admin_forms import change_form_data

pytestmark = pytest.mark.django_db

HOOK = '''
from flowops import trigger

name = "orders"


@trigger(integration="webhook")
@trigger(integration="schedule", options={"cron": "0 9 * * 1-5", "timezone": "Europe/Paris"})
def run(context):
    return {"order": context.payload, "tone": context.config.get("tone")}
'''

BROKEN = "from flowops import trigger\n\n\ndef run(context:\n    return 1\n"

REGISTER_URL = "/admin/workflows/workflow/register/"


@pytest.fixture
def orders() -> Workflow:
    registered = workflow_register_source(HOOK, origin="<test orders>").workflow
    webhook_issue(registered)
    return registered


def change_url(workflow: Workflow) -> str:
    return reverse("admin:workflows_workflow_change", args=[workflow.pk])


def save_config(client: Client, workflow: Workflow, config: str):
    url = change_url(workflow)
    return client.post(url, change_form_data(client, url, config=config))


def shown_messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def nothing_registered() -> bool:
    return not (Workflow.objects.exists() or WorkflowVersion.objects.exists()
                or Trigger.objects.exists())


# -- config --------------------------------------------------------------------------------
def test_a_plain_secret_in_config_is_refused_with_its_key_path_and_nothing_saved(
        admin_client, orders):
    Workflow.objects.filter(pk=orders.pk).update(config={"tone": "warm"})

    response = save_config(admin_client, orders,
                           '{"tone": "curt", "slack": {"token": "xoxb-1234567890-abcdefghij"}}')

    assert response.status_code == 200  # the form again, with the error on the field
    errors = response.context["adminform"].form.errors
    assert errors["config"] == [
        'config.slack.token: looks like a secret (a Slack token); store it in the environment '
        'and write {"$env": "SLACK_TOKEN"}']
    assert "config.slack.token: looks like a secret" in response.content.decode()
    orders.refresh_from_db()
    assert orders.config == {"tone": "warm"}


def test_a_secret_key_with_any_plain_value_is_refused(admin_client, orders):
    response = save_config(admin_client, orders, '{"smtp": {"password": "hunter2"}}')

    assert response.context["adminform"].form.errors["config"] == [
        'config.smtp.password: looks like a secret; store it in the environment and write '
        '{"$env": "SMTP_PASSWORD"}']
    orders.refresh_from_db()
    assert orders.config == {}


def test_an_environment_reference_is_saved(admin_client, orders):
    config = {"tone": "curt", "slack": {"token": {"$env": "SLACK_TOKEN"}}}

    response = save_config(admin_client, orders, json.dumps(config))

    assert response.status_code == 302
    orders.refresh_from_db()
    assert orders.config == config


@pytest.mark.parametrize(("text", "error"), [
    ("[1, 2]", "must be a JSON object, not array"),
    ("{not json", "Enter a valid JSON."),
])
def test_config_that_is_not_a_json_object_is_refused(admin_client, orders, text, error):
    response = save_config(admin_client, orders, text)

    assert response.context["adminform"].form.errors["config"] == [error]
    orders.refresh_from_db()
    assert orders.config == {}


def test_an_emptied_config_is_saved_as_no_settings(admin_client, orders):
    Workflow.objects.filter(pk=orders.pk).update(config={"tone": "warm"})

    response = save_config(admin_client, orders, "")

    assert response.status_code == 302
    orders.refresh_from_db()
    assert orders.config == {}


def test_the_config_is_shown_indented(admin_client, orders):
    Workflow.objects.filter(pk=orders.pk).update(config={"slack": {"token": {"$env": "T"}}})

    page = admin_client.get(change_url(orders)).content.decode()

    assert '{\n  &quot;slack&quot;: {\n    &quot;token&quot;: {\n' in page


# -- triggers, versions, runs and events on the workflow page --------------------------------
def test_the_workflow_page_shows_triggers_versions_and_links_to_runs_and_events(
        admin_client, orders):
    page = admin_client.get(change_url(orders))

    triggers = next(f for f in page.context["inline_admin_formsets"]
                    if f.opts.model is Trigger)
    shown = [(form.original.integration, form.original.event, form.original.active)
             for form in triggers]
    html = page.content.decode()
    version = orders.active_version
    assert sorted(shown) == [("schedule", "tick", True), ("webhook", "received", True)]
    assert "0 9 * * 1-5" in html and "Europe/Paris" in html  # the options
    assert reverse("admin:workflows_workflowversion_change", args=[version.pk]) in html
    assert f"?version__workflow__id__exact={orders.pk}" in html
    assert f"?workflow__id__exact={orders.pk}" in html
    assert 'name="triggers-0-event"' not in html  # read-only


def test_a_new_version_shows_the_old_triggers_inactive(admin_client, orders):
    workflow_register_source(HOOK.replace("@trigger(integration=\"webhook\")\n", ""),
                             origin="<test orders 2>")

    page = admin_client.get(change_url(orders))

    triggers = next(f for f in page.context["inline_admin_formsets"]
                    if f.opts.model is Trigger)
    assert [(form.original.integration, form.original.active) for form in triggers] == [
        ("schedule", True), ("schedule", False), ("webhook", False)]


# -- events ------------------------------------------------------------------------------------
@pytest.fixture
def delivered(client, orders) -> Event:
    body = json.dumps({"order": 7}).encode()
    answer = client.post(f"/hooks/webhooks/{orders.slug}/", body,
                         content_type="application/json", HTTP_IDEMPOTENCY_KEY="delivery-7",
                         HTTP_X_FLOWOPS_SIGNATURE=signature_for(webhook_secret(orders), body))
    assert answer.status_code == 202, answer.content
    return Event.objects.get()


def test_the_event_admin_lists_events_filtered_by_source_and_status(admin_client, delivered):
    url = reverse("admin:workflows_event_changelist")

    listed = admin_client.get(url, {"source": "webhook", "status": "started"})
    none = admin_client.get(url, {"source": "slack"})
    searched = admin_client.get(url, {"q": "delivery-7"})

    assert list(listed.context["cl"].result_list) == [delivered]
    assert list(none.context["cl"].result_list) == []
    assert list(searched.context["cl"].result_list) == [delivered]


def test_the_event_page_shows_its_data_and_links_its_runs(admin_client, delivered):
    run = Run.objects.get()

    page = admin_client.get(reverse("admin:workflows_event_change", args=[delivered.pk]))

    html = page.content.decode()
    assert page.status_code == 200
    assert delivered.key == "orders:delivery-7" and delivered.key in html
    assert "<pre>{\n  &quot;payload&quot;: {\n    &quot;order&quot;: 7\n  }\n}</pre>" in html
    assert reverse("admin:runs_run_change", args=[run.pk]) in html
    assert 'name="_save"' not in html


def test_events_cannot_be_added_changed_or_deleted(admin_client, delivered):
    change = reverse("admin:workflows_event_change", args=[delivered.pk])
    delete = reverse("admin:workflows_event_delete", args=[delivered.pk])

    assert admin_client.get(reverse("admin:workflows_event_add")).status_code == 403
    assert admin_client.post(change, {"key": "changed", "source": "x"}).status_code == 403
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    delivered.refresh_from_db()
    assert delivered.key == "orders:delivery-7"


def test_the_runs_link_of_an_event_lists_its_runs(admin_client, delivered):
    runs = admin_client.get(reverse("admin:runs_run_changelist"),
                            {"event__id__exact": delivered.pk})

    assert [run.event_id for run in runs.context["cl"].result_list] == [delivered.pk]


# -- webhook secret rotation ---------------------------------------------------------------------
def rotate(client: Client, workflow: Workflow):
    return client.post(reverse("admin:workflows_workflow_changelist"),
                       {"action": "rotate_webhook_secret", "_selected_action": [workflow.pk]})


def deliver(workflow: Workflow, secret: str) -> int:
    body = b'{"order": 1}'
    return Client().post(f"/hooks/webhooks/{workflow.slug}/", body,
                         content_type="application/json",
                         HTTP_X_FLOWOPS_SIGNATURE=signature_for(secret, body)).status_code


def test_rotating_shows_a_new_secret_once_that_signs_deliveries_and_the_old_one_stops(
        admin_client, orders):
    old = webhook_secret(orders)

    response = rotate(admin_client, orders)

    assert response.status_code == 302
    [message] = shown_messages(response)
    new = message.split("<code>")[1].split("</code>")[0]
    assert len(new) == 64 and new != old
    assert deliver(orders, new) == 202
    assert deliver(orders, old) == 401
    changelist = reverse("admin:workflows_workflow_changelist")
    assert "<code>" in admin_client.get(changelist).content.decode()  # shown here...
    assert "<code>" not in admin_client.get(changelist).content.decode()  # ...and only here


def test_rotating_warns_when_the_workflow_takes_no_webhooks(admin_client):
    plain = workflow_register_source(HOOK.replace('@trigger(integration="webhook")\n', ""),
                                     origin="<test no hook>").workflow

    texts = shown_messages(rotate(admin_client, plain))

    assert texts[1] == ('orders has no active webhook trigger; add '
                        '@trigger(integration="webhook") and register it to accept deliveries.')


def test_rotating_needs_the_change_permission(client, orders):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(*_permissions("view_workflow"))
    client.force_login(viewer)
    old = webhook_secret(orders)

    response = rotate(client, orders)

    orders.refresh_from_db()
    assert webhook_secret(orders) == old
    assert response.status_code == 200  # the list again: the action is not offered
    assert response.context["action_form"] is None
    assert shown_messages(response) == []


def _permissions(*codenames: str):
    from django.contrib.auth.models import Permission

    return Permission.objects.filter(codename__in=codenames)


# -- registering a script ------------------------------------------------------------------------
def test_the_changelist_has_a_register_button(admin_client):
    page = admin_client.get(reverse("admin:workflows_workflow_changelist")).content.decode()

    assert f'href="{REGISTER_URL}"' in page and "Register a workflow" in page


def test_uploading_a_script_registers_it_and_shows_the_workflow(admin_client):
    upload = SimpleUploadedFile("orders.py", HOOK.encode(), content_type="text/x-python")

    response = admin_client.post(REGISTER_URL, {"file": upload})

    workflow = Workflow.objects.get(slug="orders")
    version = workflow.active_version
    assert response.status_code == 302
    assert response["Location"] == change_url(workflow)
    assert shown_messages(response) == [
        f"Registered orders: version {version.sha256[:12]} is active (script; triggers: "
        "webhook/received, schedule/tick)."]
    assert version.source == HOOK
    assert version.origin_path == f"<upload {version.sha256[:12]} orders.py>"
    assert workflow.triggers.filter(active=True).count() == 2


def test_pasted_source_takes_its_slug_from_the_file_name(admin_client):
    source = HOOK.replace('name = "orders"\n', "")

    response = admin_client.post(REGISTER_URL, {"source": source, "file_name": "billing.py"})

    assert response.status_code == 302
    assert Workflow.objects.get().slug == "billing"


def test_an_uploaded_file_may_start_with_a_byte_order_mark(admin_client):
    upload = SimpleUploadedFile("orders.py", b"\xef\xbb\xbf" + HOOK.encode())

    response = admin_client.post(REGISTER_URL, {"file": upload})

    assert response.status_code == 302
    assert Workflow.objects.get().active_version.source == HOOK


def test_pasted_source_is_the_same_version_as_the_file(admin_client, orders):
    pasted = HOOK.replace("\n", "\r\n")  # as a browser sends a textarea

    response = admin_client.post(REGISTER_URL, {"source": pasted})

    assert response.status_code == 302
    assert list(WorkflowVersion.objects.all()) == [orders.active_version]


def test_a_script_with_a_syntax_error_is_refused_with_file_and_line_and_nothing_stored(
        admin_client):
    upload = SimpleUploadedFile("broken.py", BROKEN.encode())

    response = admin_client.post(REGISTER_URL, {"file": upload})

    assert response.status_code == 200
    [error] = response.context["form"].non_field_errors()
    assert error == "Not registered: broken.py:4: syntax error: '(' was never closed"
    html = response.content.decode()
    assert "broken.py:4: syntax error" in html and "&lt;upload" not in html
    assert nothing_registered()


def test_a_bad_trigger_in_pasted_source_names_its_line(admin_client):
    source = "from flowops import trigger\n\n@trigger(integration='fax')\ndef run(c):\n  pass\n"

    response = admin_client.post(REGISTER_URL, {"source": source, "file_name": "fax.py"})

    [error] = response.context["form"].non_field_errors()
    assert error.startswith("Not registered: fax.py:3: TriggerDefinitionError: @trigger: "
                            "unknown integration 'fax'")
    assert nothing_registered()


@pytest.mark.parametrize(("data", "error"), [
    ({}, "Upload a script file or paste its source."),
    ({"source": "   \n"}, "Upload a script file or paste its source."),
    ({"source": HOOK, "file": SimpleUploadedFile("a.py", b"x = 1\n")},
     "Upload a file or paste the source, not both."),
    ({"source": "x = 1\n"}, "Not registered: source: no module-level `pipeline` (a Step or "
                             "Pipeline) nor a `def run(context)` to run"),
])
def test_incomplete_or_bad_registrations_are_refused(admin_client, data, error):
    response = admin_client.post(REGISTER_URL, data)

    assert response.context["form"].non_field_errors() == [error]
    assert nothing_registered()


def test_only_python_files_are_accepted(admin_client):
    upload = SimpleUploadedFile("orders.txt", HOOK.encode())

    response = admin_client.post(REGISTER_URL, {"file": upload})

    assert response.context["form"].errors["file"] == ["must be a Python script (.py)"]
    assert nothing_registered()


def test_non_staff_are_sent_to_the_login_page_and_nothing_is_registered(client):
    member = User.objects.create_user("bob", password="pw")  # signed in, not staff
    client.force_login(member)

    shown = client.get(REGISTER_URL)
    posted = client.post(REGISTER_URL, {"source": HOOK})
    anonymous = Client().post(REGISTER_URL, {"source": HOOK})

    for response in (shown, posted, anonymous):
        assert response.status_code == 302
        assert response["Location"].startswith(f"/admin/login/?next={REGISTER_URL}")
    assert nothing_registered()


def test_registering_is_csrf_protected(admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)

    response = client.post(REGISTER_URL, {"source": HOOK})

    assert response.status_code == 403
    assert nothing_registered()
