"""FlowOps-style scripts (``@trigger`` on ``def run(context)``) on the embedded driver."""

from __future__ import annotations

import pytest

from apps.runs.models import JournalEntry, Run
from apps.runs.services.runs import run_resume, run_start
from apps.workflows.models import Workflow
from flowops._codec import digest
from flowops.context import envelope
from tests.apps.runs.conftest import EMBEDDED, journal_of, statuses

pytestmark = EMBEDDED

SCRIPT = '''
    from pathlib import Path
    from flowops import activity, trigger

    LOG = Path(__file__).with_suffix(".log")

    @activity(effect=True)
    def send(text: str) -> str:
        with LOG.open("a") as log:
            log.write(text + "\\n")
        return "sent " + text

    @trigger(integration="webhook")
    @trigger(integration="slack", event="app_mention", options={"channel": "#ops"})
    def run(context):
        said = send(f"{context.trigger.integration}:{context.payload}")
        if context.message is not None:
            said = send(f"{context.message.channel}:{context.message.text}")
        return {"said": said, "workflow": context.workflow, "run": context.run_id,
                "workflow_id": context.workflow_id, "config": context.config}
'''


def sent(flow) -> list[str]:
    log = flow.path.with_suffix(".log")
    return log.read_text().splitlines() if log.exists() else []


def test_a_script_runs_as_the_one_step_run_with_its_journal_under_run(make_flow):
    flow = make_flow(SCRIPT)

    run = flow.run({"n": 1})

    assert flow.loaded.is_script
    assert [(t.integration, t.event) for t in flow.loaded.triggers] == [
        ("webhook", "received"), ("slack", "app_mention")]
    assert run.status == Run.Status.SUCCEEDED
    assert run.input == {"trigger": {"integration": "manual", "event": None, "id": None},
                         "message": None, "payload": {"n": 1}}
    assert run.output == {"said": "sent manual:{'n': 1}", "workflow": flow.version.workflow.slug,
                          "run": run.id, "workflow_id": flow.version.workflow_id, "config": {}}
    assert statuses(run) == {"run": "succeeded"}
    assert [(scope, seq, call) for scope, seq, call, *_ in journal_of(run)] == [
        ("run", 0, "send")]


def test_the_context_carries_the_message_of_a_chat_event(make_flow):
    flow = make_flow(SCRIPT)
    event = envelope(integration="slack", event="app_mention",
                     message={"text": "hi", "channel": "C1", "user": "U1", "ts": "1.2"})

    run = _run_event(flow, event)

    assert run.status == Run.Status.SUCCEEDED
    assert sent(flow) == ["slack:None", "C1:hi"]


def _run_event(flow, event) -> Run:
    from apps.runs.services.runs import run_create

    run = run_create(version=flow.version, loaded=flow.loaded, event_data=event)
    run_start(run)
    run.refresh_from_db()
    return run


def test_config_reads_secrets_from_the_environment_and_names_a_missing_one(make_flow,
                                                                          monkeypatch):
    flow = make_flow(SCRIPT)
    Workflow.objects.filter(pk=flow.version.workflow_id).update(
        config={"tone": "warm", "api": {"key": {"$env": "FLOWOPS_TEST_KEY"}}})
    monkeypatch.setenv("FLOWOPS_TEST_KEY", "s3cret")

    run = flow.run("x")

    assert run.output["config"] == {"tone": "warm", "api": {"key": "s3cret"}}

    monkeypatch.delenv("FLOWOPS_TEST_KEY")
    failed = flow.run("y")

    assert failed.status == Run.Status.FAILED
    assert failed.error["type"] == "ConfigError"
    assert failed.error["message"] == ("config.api.key: the environment variable "
                                       "FLOWOPS_TEST_KEY is not set on this worker")


def test_config_references_inside_arrays_are_resolved_too(make_flow, monkeypatch):
    flow = make_flow(SCRIPT)
    Workflow.objects.filter(pk=flow.version.workflow_id).update(
        config={"keys": [{"$env": "FLOWOPS_TEST_A"}, "plain", {"$env": "FLOWOPS_TEST_B"}]})
    monkeypatch.setenv("FLOWOPS_TEST_A", "a")
    monkeypatch.delenv("FLOWOPS_TEST_B", raising=False)

    failed = flow.run("x")
    monkeypatch.setenv("FLOWOPS_TEST_B", "b")
    run = flow.run("y")

    assert failed.error["message"] == ("config.keys[2]: the environment variable "
                                       "FLOWOPS_TEST_B is not set on this worker")
    assert run.output["config"] == {"keys": ["a", "plain", "b"]}


def test_a_resumed_script_runs_from_the_top_and_never_repeats_an_effect(make_flow):
    flow = make_flow('''
        from flowops import activity, trigger

        ATTEMPTS = []

        @activity(effect=True)
        def reply(text: str) -> str:
            ATTEMPTS.append(text)
            return text

        @trigger(integration="webhook")
        def run(context):
            reply("thanks")
            if len(ATTEMPTS) == 1 and not context.payload.get("fixed"):
                raise RuntimeError("crashed after the reply")
            return "done"
    ''')
    run = flow.run({})
    assert run.status == Run.Status.FAILED

    Run.objects.filter(pk=run.pk).update(input=envelope(integration="manual",
                                                        payload={"fixed": True}))
    run_resume(run_id=run.id)

    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED
    assert flow.module.ATTEMPTS == ["thanks"]


def test_a_divergent_replay_of_a_script_raises_non_determinism(make_flow):
    flow = make_flow(SCRIPT)
    run = flow.create("a")
    JournalEntry.objects.create(run=run, scope="run", seq=0, call="other",
                                args_hash=digest(["other", [], {}]),
                                state=JournalEntry.State.DONE, result=1, attempt=1)

    run_start(run)

    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    assert run.error["type"] == "NonDeterminismError"
    assert "replay of step 'run' diverged at call 0" in run.error["message"]
    assert sent(flow) == []


def test_an_async_script_runs_too(make_flow):
    flow = make_flow('''
        from flowops import trigger

        @trigger(integration="webhook")
        async def run(context):
            return [context.payload, context.trigger.integration]
    ''')

    run = flow.run(3)

    assert run.status == Run.Status.SUCCEEDED
    assert run.output == [3, "manual"]


@pytest.mark.parametrize(("source", "line", "message"), [
    ('@trigger(integration="slak")\ndef run(context):\n    pass\n', 3,
     "TriggerDefinitionError: @trigger: unknown integration 'slak'; one of: schedule, "
     "slack, webhook"),
    ('@trigger(integration="slack", event="reaction")\ndef run(context):\n    pass\n', 3,
     "unknown event 'reaction'; one of: message, app_mention"),
    ('@trigger(integration="slack", options={"chanel": "#a"})\ndef run(context):\n'
     "    pass\n", 3, "unknown option 'chanel' (options: channel)"),
    ('@trigger(integration="schedule")\ndef run(context):\n    pass\n', 3,
     "option 'cron' is required"),
    ('@trigger(integration="schedule", options={"cron": "61 * * * *"})\n'
     "def run(context):\n    pass\n", 3, "option 'cron' is not a valid cron expression"),
    ('@trigger(integration="schedule", options={"cron": "* * * * *", "timezone": "Mars/Base"})'
     "\ndef run(context):\n    pass\n", 3, "'Mars/Base' is not a known IANA time zone"),
    ('@trigger(integration="webhook")\ndef handle(context):\n    pass\n', 3,
     "@trigger is on `handle`; triggers go on `def run(context)`"),
    ("import flowops\n@flowops.step\ndef echo(x: int) -> int:\n    return x\npipeline = echo\n"
     '@trigger(integration="webhook")\ndef run(context):\n    pass\n', None,
     "defines both `pipeline` and `run`"),
])
def test_bad_triggers_are_refused_with_file_line_and_reason(write_script, source, line,
                                                           message):
    from apps.workflows.services import workflow_version_from_path
    from flowops.exceptions import ScriptError

    path = write_script("from flowops import trigger\n\n" + source)

    with pytest.raises(ScriptError) as caught:
        workflow_version_from_path(path)

    assert caught.value.path == str(path)
    assert caught.value.line == line
    assert message in str(caught.value)
