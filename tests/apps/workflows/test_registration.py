"""register_workflow: scripts become active versions with their triggers, atomically."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.workflows.models import Trigger, Workflow, WorkflowVersion
from apps.workflows.services.events import triggers_active
from apps.workflows.services.registry import workflow_register, workflows_discover
from flowops.exceptions import ScriptError

pytestmark = pytest.mark.django_db

SUPPORT = '''
from flowops import trigger

name = "Support Bot"

@trigger(integration="slack", event="message", options={"channel": "#support"})
@trigger(integration="webhook")
def run(context):
    return context.payload
'''


def test_registration_creates_the_workflow_its_version_and_triggers(write_script):
    path = write_script(SUPPORT, "support.py")

    done = workflow_register(path)

    workflow = Workflow.objects.get(slug="support-bot")
    assert workflow.active_version == done.version
    assert done.version.entry == "run"
    assert [(t.integration, t.event, t.options, t.line, t.active)
            for t in Trigger.objects.filter(workflow=workflow).order_by("id")] == [
        ("slack", "message", {"channel": "#support"}, 5, True),
        ("webhook", "received", {}, 6, True)]
    assert [t.workflow.slug for t in triggers_active("slack", "message")] == ["support-bot"]


def test_a_new_version_replaces_the_triggers_and_the_same_source_keeps_its_rows(write_script):
    path = write_script(SUPPORT, "support.py")
    source = path.read_text()
    first = workflow_register(path)
    path.write_text(source.replace('@trigger(integration="webhook")\n', ""))

    second = workflow_register(path)

    assert second.version != first.version
    assert list(triggers_active("webhook")) == []
    assert [t.version_id for t in Trigger.objects.filter(active=True)] == [second.version.id]

    path.write_text(source)
    again = workflow_register(path)

    assert again.version == first.version
    assert sorted(t.id for t in again.triggers) == sorted(t.id for t in first.triggers)
    assert Trigger.objects.filter(active=True).count() == 2
    assert Workflow.objects.get(slug="support-bot").active_version == first.version


def test_a_refused_script_writes_nothing(write_script):
    path = write_script('from flowops import trigger\n\n@trigger(integration="slack", '
                        'options={"channel": 5})\ndef run(context):\n    pass\n', "bad.py")

    with pytest.raises(ScriptError) as caught:
        workflow_register(path)

    assert str(caught.value) == (
        f"{path}:3: TriggerDefinitionError: @trigger(integration='slack'): option 'channel' "
        "must be a channel name like '#support' or a channel id like 'C0123ABCD'")
    assert not Workflow.objects.exists()
    assert not WorkflowVersion.objects.exists()


def test_the_command_registers_paths_and_exits_2_naming_a_bad_one(write_script, capsys):
    good = write_script(SUPPORT, "support.py")
    bad = write_script("def run(:\n", "broken.py")

    with pytest.raises(CommandError) as caught:
        call_command("register_workflow", str(good), str(bad))

    assert caught.value.returncode == 2
    assert str(caught.value) == f"not registered: {bad}:1: syntax error: invalid syntax"
    assert "registered support-bot" in capsys.readouterr().out
    assert Workflow.objects.filter(slug="support-bot").exists()


def test_discovery_registers_every_script_and_reports_the_refused(write_script, settings,
                                                                  tmp_path):
    write_script(SUPPORT, "support.py")
    write_script("x = 1\n", "nothing.py")
    settings.FLOWOPS_WORKFLOW_DIRS = [str(tmp_path)]

    results = workflows_discover()

    refused = [r for r in results if isinstance(r, ScriptError)]
    assert [str(r) for r in refused] == [
        f"{tmp_path / 'nothing.py'}: no module-level `pipeline` (a Step or Pipeline) nor a "
        "`def run(context)` to run"]
    assert list(Workflow.objects.values_list("slug", flat=True)) == ["support-bot"]
