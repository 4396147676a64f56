"""The runs admin: read-only pages over runs, steps and the journal; actions call services.

The test transaction never commits, so the driver that ``run_resume`` / ``run_approve``
hand work to after commit never starts: these tests see exactly what the service wrote.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib import messages
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from apps.runs.models import JournalEntry, Run, StepRun
from apps.runs.services.runs import run_create
from apps.workflows.services import workflow_version_from_path

pytestmark = pytest.mark.django_db

SCRIPT = """
from flowops import Step, step

name = "admin-demo"


@step
def fetch(text: str) -> str:
    return text.upper()


@step
def shout(text: str) -> str:
    return text + "!"


pipeline = fetch >> Step.human_in_the_loop("review", message="check it") >> shout
"""

TRACEBACK = ('Traceback (most recent call last):\n  File "flow.py", line 9, in shout\n'
             "ValueError: <boom>\n")
CHANGELIST = reverse("admin:runs_run_changelist")


@pytest.fixture
def new_run(write_script):
    version, loaded = workflow_version_from_path(write_script(SCRIPT))

    def create() -> Run:
        return run_create(version=version, loaded=loaded, input="hello")

    return create


def set_status(run: Run, status: str, **fields) -> Run:
    """Test setup only: put a run where the engine would have left it."""
    fields.setdefault("started_at", timezone.now() - timedelta(seconds=90))
    Run.objects.filter(pk=run.pk).update(status=status, **fields)
    run.refresh_from_db()
    return run


@pytest.fixture
def failed_run(new_run) -> Run:
    run = set_status(new_run(), Run.Status.FAILED, finished_at=timezone.now(), error={
        "step_key": "fetch", "type": "ValueError", "message": "<boom>"})
    StepRun.objects.filter(run=run, key="fetch").update(
        status=StepRun.Status.FAILED, attempt=1, duration_ms=12.5,
        error={"type": "ValueError", "message": "<boom>", "traceback": TRACEBACK})
    return run


@pytest.fixture
def paused_run(new_run) -> Run:
    run = set_status(new_run(), Run.Status.PAUSED, paused_step_key="review",
                     pause_message="check it")
    StepRun.objects.filter(run=run, key="fetch").update(
        status=StepRun.Status.SUCCEEDED, attempt=1, output="HELLO")
    return run


def act(client, action: str, *runs: Run):
    response = client.post(CHANGELIST, {"action": action, "_selected_action": [r.pk for r in runs]})
    assert response.status_code == 302
    return [(m.level, m.message) for m in get_messages(response.wsgi_request)]


# -- pages -----------------------------------------------------------------------------
def test_changelist_lists_runs_with_progress(admin_client, failed_run, paused_run):
    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    page = response.content.decode()
    assert failed_run.pk in page and paused_run.pk in page
    assert "admin-demo" in page
    assert "0/3" in page and "1/3" in page
    assert "1 min 30 s" in page  # the failed run's duration


@pytest.mark.parametrize("query", [
    {"status__exact": "failed"}, {"driver": "embedded"}, {"q": "admin-demo"},
    {"created_at__year": "2020"},
])
def test_changelist_filters_and_search_render(admin_client, failed_run, query):
    assert admin_client.get(CHANGELIST, query).status_code == 200


def test_search_by_run_id_finds_only_that_run(admin_client, failed_run, paused_run):
    response = admin_client.get(CHANGELIST, {"q": failed_run.pk})

    assert [r.pk for r in response.context["cl"].result_list] == [failed_run.pk]


def test_change_page_shows_steps_error_and_journal_link(admin_client, failed_run):
    url = reverse("admin:runs_run_change", args=[failed_run.pk])

    response = admin_client.get(url)

    assert response.status_code == 200
    page = response.content.decode()
    assert all(key in page for key in ("fetch", "review", "shout"))
    assert "&lt;boom&gt;" in page and "<boom>" not in page
    step = StepRun.objects.get(run=failed_run, key="fetch")
    assert reverse("admin:runs_steprun_change", args=[step.pk]) in page
    journal = reverse("admin:runs_journalentry_changelist")
    assert f"{journal}?run__id__exact={failed_run.pk}" in page
    assert 'name="_save"' not in page


def test_step_page_shows_traceback_in_pre(admin_client, failed_run):
    step = StepRun.objects.get(run=failed_run, key="fetch")

    response = admin_client.get(reverse("admin:runs_steprun_change", args=[step.pk]))

    assert response.status_code == 200
    assert ('<pre>Traceback (most recent call last):\n  File &quot;flow.py&quot;, line 9, in shout'
            "\nValueError: &lt;boom&gt;\n</pre>") in response.content.decode()


def test_step_changelist_filters_and_searches(admin_client, failed_run, paused_run):
    url = reverse("admin:runs_steprun_changelist")

    response = admin_client.get(url, {"status__exact": "failed", "q": failed_run.pk})

    assert response.status_code == 200
    assert [(s.run_id, s.key) for s in response.context["cl"].result_list] == [
        (failed_run.pk, "fetch")]


def test_journal_link_lists_only_that_runs_entries(admin_client, failed_run, paused_run):
    for run, call in ((failed_run, "charge_card"), (paused_run, "send_mail")):
        JournalEntry.objects.create(run=run, scope="fetch", seq=0, call=call, args_hash="x",
                                    effect=True, state=JournalEntry.State.DONE, attempt=1)
    url = reverse("admin:runs_journalentry_changelist")

    listed = admin_client.get(url, {"run__id__exact": failed_run.pk})
    entry = admin_client.get(reverse("admin:runs_journalentry_change",
                                     args=[listed.context["cl"].result_list[0].pk]))

    assert [e.call for e in listed.context["cl"].result_list] == ["charge_card"]
    assert entry.status_code == 200
    assert admin_client.get(url, {"state__exact": "done", "effect__exact": "1",
                                  "q": "send_mail"}).status_code == 200


def test_runs_steps_and_journal_cannot_be_added_or_edited(admin_client, failed_run):
    step = StepRun.objects.get(run=failed_run, key="fetch")

    assert admin_client.get(reverse("admin:runs_run_add")).status_code == 403
    assert admin_client.get(reverse("admin:runs_steprun_add")).status_code == 403
    assert admin_client.get(reverse("admin:runs_journalentry_add")).status_code == 403
    change = reverse("admin:runs_run_change", args=[failed_run.pk])
    assert admin_client.post(change, {"status": "succeeded"}).status_code == 403
    assert admin_client.get(reverse("admin:runs_run_delete", args=[failed_run.pk])
                            ).status_code == 403
    assert admin_client.get(reverse("admin:runs_steprun_delete", args=[step.pk])
                            ).status_code == 403
    failed_run.refresh_from_db()
    assert failed_run.status == Run.Status.FAILED


# -- actions ---------------------------------------------------------------------------
def test_cancel_moves_a_running_run_to_cancelled(admin_client, new_run):
    run = set_status(new_run(), Run.Status.RUNNING)

    reported = act(admin_client, "cancel_runs", run)

    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED
    assert run.finished_at is not None
    assert set(run.steps.values_list("status", flat=True)) == {StepRun.Status.CANCELLED}
    assert reported == [(messages.SUCCESS, f"cancelled run {run.pk}; it is now cancelled")]


def test_reject_fails_a_paused_run_with_the_admins_name(admin_client, paused_run):
    reported = act(admin_client, "reject_runs", paused_run)

    paused_run.refresh_from_db()
    assert paused_run.status == Run.Status.FAILED
    assert paused_run.error == {"step_key": "review", "type": "Rejected",
                                "message": "rejected: rejected in admin by admin"}
    assert paused_run.error["message"].startswith("rejected: ")
    assert StepRun.objects.get(run=paused_run, key="review").status == StepRun.Status.FAILED
    assert reported == [(messages.SUCCESS, f"rejected run {paused_run.pk}; it is now failed")]


def test_approve_on_a_run_that_is_not_paused_reports_and_changes_nothing(admin_client, new_run):
    run = new_run()
    steps_before = list(run.steps.values_list("key", "status", "output"))

    reported = act(admin_client, "approve_runs", run)

    run.refresh_from_db()
    assert reported == [(messages.ERROR, f"run {run.pk} is pending, not paused")]
    assert run.status == Run.Status.PENDING
    assert list(run.steps.values_list("key", "status", "output")) == steps_before


def test_approve_completes_the_paused_step(admin_client, paused_run):
    reported = act(admin_client, "approve_runs", paused_run)

    paused_run.refresh_from_db()
    assert paused_run.status == Run.Status.RUNNING
    assert paused_run.paused_step_key == ""
    assert StepRun.objects.get(run=paused_run, key="review").status == StepRun.Status.SUCCEEDED
    assert reported == [(messages.SUCCESS, f"approved run {paused_run.pk}; it is now running")]


def test_actions_report_each_run_on_its_own(admin_client, failed_run, paused_run, new_run):
    cancelled = set_status(new_run(), Run.Status.CANCELLED)

    reported = act(admin_client, "resume_runs", failed_run, paused_run, cancelled)

    failed_run.refresh_from_db()
    paused_run.refresh_from_db()
    cancelled.refresh_from_db()
    assert sorted(reported) == sorted([
        (messages.SUCCESS, f"resumed run {failed_run.pk}; it is now running"),
        (messages.ERROR, f"run {paused_run.pk} waits for approval at review; "
                         "use approve or approve --reject"),
        (messages.ERROR, f"run {cancelled.pk} is cancelled; nothing to resume"),
    ])
    assert (failed_run.status, paused_run.status, cancelled.status) == (
        Run.Status.RUNNING, Run.Status.PAUSED, Run.Status.CANCELLED)
    assert StepRun.objects.get(run=failed_run, key="fetch").error is None


def test_staff_without_change_permission_sees_no_actions(client, paused_run):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    client.force_login(viewer)

    page = client.get(CHANGELIST)
    refused = client.post(CHANGELIST, {"action": "reject_runs",
                                       "_selected_action": [paused_run.pk]})

    assert page.status_code == 200
    assert "reject_runs" not in page.content.decode()
    assert refused.status_code == 200  # an unknown action: the list again, nothing done
    paused_run.refresh_from_db()
    assert paused_run.status == Run.Status.PAUSED
