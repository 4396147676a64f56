"""The workflows admin: workflows list their versions; versions are read-only and may be
deleted only while no run uses them."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from apps.runs.services.runs import run_create
from apps.workflows.models import Workflow, WorkflowVersion
from apps.workflows.services import workflow_version_from_path
from tests.apps.workflows.admin_forms import change_form_data

pytestmark = pytest.mark.django_db

SCRIPT = """
from flowops import step

name = "admin-wf"


@step
def shout(text: str) -> str:
    return text + "{suffix}"


pipeline = shout >> shout
"""


@pytest.fixture
def pin(write_script):
    """Pin a version of the script; a different suffix is a different source."""

    def pin(suffix: str = "!"):
        return workflow_version_from_path(write_script(SCRIPT.replace("{suffix}", suffix)))

    return pin


@pytest.fixture
def used_version(pin) -> WorkflowVersion:
    version, loaded = pin("!")
    run_create(version=version, loaded=loaded, input="hi")
    return version


@pytest.fixture
def unused_version(pin) -> WorkflowVersion:
    return pin("?")[0]


def test_changelist_shows_slug_and_number_of_versions(admin_client, used_version,
                                                      unused_version):
    response = admin_client.get(reverse("admin:workflows_workflow_changelist"))

    assert response.status_code == 200
    [workflow] = response.context["cl"].result_list
    assert (workflow.slug, workflow.version_count) == ("admin-wf", 2)


def test_change_page_lists_versions_and_keeps_the_slug(admin_client, used_version):
    workflow = used_version.workflow
    url = reverse("admin:workflows_workflow_change", args=[workflow.pk])

    page = admin_client.get(url)
    saved = admin_client.post(url, change_form_data(admin_client, url, slug="renamed",
                                                    name="Shouting", description=""))

    assert page.status_code == 200
    assert used_version.sha256 in page.content.decode()
    assert saved.status_code == 302
    workflow.refresh_from_db()
    assert (workflow.slug, workflow.name) == ("admin-wf", "Shouting")


def test_version_page_shows_the_source_escaped_in_pre(admin_client, used_version):
    url = reverse("admin:workflows_workflowversion_change", args=[used_version.pk])

    page = admin_client.get(url).content.decode()

    assert "<pre>from flowops import step\n" in page
    assert "pipeline = shout &gt;&gt; shout\n</pre>" in page
    assert used_version.origin_path in page
    assert 'name="_save"' not in page


def test_versions_and_workflows_cannot_be_added_or_changed(admin_client, used_version):
    change = reverse("admin:workflows_workflowversion_change", args=[used_version.pk])

    assert admin_client.get(reverse("admin:workflows_workflow_add")).status_code == 403
    assert admin_client.get(reverse("admin:workflows_workflowversion_add")).status_code == 403
    assert admin_client.post(change, {"source": "pipeline = None"}).status_code == 403
    used_version.refresh_from_db()
    assert "pipeline = shout >> shout" in used_version.source


def test_a_version_without_runs_can_be_deleted(admin_client, used_version, unused_version):
    url = reverse("admin:workflows_workflowversion_delete", args=[unused_version.pk])

    response = admin_client.post(url, {"post": "yes"})

    assert response.status_code == 302
    assert list(WorkflowVersion.objects.all()) == [used_version]


def test_a_version_with_runs_cannot_be_deleted(admin_client, used_version):
    url = reverse("admin:workflows_workflowversion_delete", args=[used_version.pk])

    assert admin_client.get(url).status_code == 403
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert WorkflowVersion.objects.filter(pk=used_version.pk).exists()


def test_bulk_delete_refuses_versions_that_runs_use(admin_client, used_version, unused_version):
    url = reverse("admin:workflows_workflowversion_changelist")

    response = admin_client.post(url, {"action": "delete_selected", "post": "yes",
                                       "_selected_action": [used_version.pk,
                                                            unused_version.pk]})

    assert response.status_code == 200  # the confirmation page, listing what protects them
    assert "Cannot delete" in response.content.decode()
    assert WorkflowVersion.objects.count() == 2


def test_workflow_with_used_versions_cannot_be_deleted(admin_client, used_version):
    workflow = used_version.workflow
    url = reverse("admin:workflows_workflow_delete", args=[workflow.pk])

    response = admin_client.post(url, {"post": "yes"})

    assert response.status_code == 200  # the confirmation page names the protecting runs
    assert "Cannot delete" in response.content.decode()
    assert Workflow.objects.filter(pk=workflow.pk).exists()


def test_version_changelist_links_to_its_runs(admin_client, used_version):
    page = admin_client.get(reverse("admin:workflows_workflowversion_changelist"))
    runs = admin_client.get(reverse("admin:runs_run_changelist"),
                            {"version__id__exact": used_version.pk})

    assert f"?version__id__exact={used_version.pk}" in page.content.decode()
    assert runs.status_code == 200
    assert len(runs.context["cl"].result_list) == 1


def _save_defaults(admin_client, workflow: Workflow, usd: str = "", tokens: str = ""):
    url = reverse("admin:workflows_workflow_change", args=[workflow.pk])
    return admin_client.post(url, change_form_data(admin_client, url, default_budget_usd=usd,
                                                   default_budget_tokens=tokens))


def test_change_page_sets_the_default_budget_of_new_runs(admin_client, used_version):
    workflow = used_version.workflow
    url = reverse("admin:workflows_workflow_change", args=[workflow.pk])

    page = admin_client.get(url).content.decode()
    saved = _save_defaults(admin_client, workflow, usd="0.25", tokens="5000")

    assert "Default budget of new runs" in page
    assert 'name="default_budget_usd"' in page and 'name="default_budget_tokens"' in page
    assert saved.status_code == 302
    workflow.refresh_from_db()
    assert (workflow.default_budget_usd, workflow.default_budget_tokens) == (
        Decimal("0.25"), 5000)


def test_clearing_the_default_budget_leaves_new_runs_without_one(admin_client, used_version):
    workflow = used_version.workflow
    Workflow.objects.filter(pk=workflow.pk).update(default_budget_usd=Decimal("1"),
                                                   default_budget_tokens=10)

    saved = _save_defaults(admin_client, workflow)

    assert saved.status_code == 302
    workflow.refresh_from_db()
    assert (workflow.default_budget_usd, workflow.default_budget_tokens) == (None, None)


@pytest.mark.parametrize(("usd", "tokens", "field", "message"), [
    ("0", "", "default_budget_usd", "Default budget (USD) must be greater than 0"),
    ("-0.5", "", "default_budget_usd", "Default budget (USD) must be greater than 0"),
    ("", "0", "default_budget_tokens", "Default budget (tokens) must be greater than 0"),
    ("", "-3", "default_budget_tokens", "Default budget (tokens) must be greater than 0"),
])
def test_a_default_budget_of_zero_or_less_is_refused_naming_the_field(
        admin_client, used_version, usd, tokens, field, message):
    workflow = used_version.workflow

    response = _save_defaults(admin_client, workflow, usd=usd, tokens=tokens)

    assert response.status_code == 200  # the form again, with the error
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field]
    assert errors[field][0].startswith(message)
    assert message in response.content.decode()
    workflow.refresh_from_db()
    assert (workflow.default_budget_usd, workflow.default_budget_tokens) == (None, None)


@pytest.mark.parametrize("field", ["default_budget_usd", "default_budget_tokens"])
def test_the_database_refuses_a_default_budget_of_zero(used_version, field):
    with pytest.raises(IntegrityError), transaction.atomic():
        Workflow.objects.filter(pk=used_version.workflow_id).update(**{field: 0})
