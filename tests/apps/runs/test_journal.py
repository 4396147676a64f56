"""The journal (CONTRACTS.md §7): journaled calls replay after a crash, effects are reused
after an exception, and a replay that makes a different call stops the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.db import connection

from apps.runs.models import JournalEntry, Run
from apps.runs.services.runs import run_resume, run_start
from flowops._codec import digest
from tests.apps.runs.conftest import EMBEDDED, journal_of, statuses, steps_of

pytestmark = EMBEDDED

ROOT = Path(settings.BASE_DIR)

ACTIVITIES = '''
from pathlib import Path

from flowops import activity, step

LOG = Path({log!r})
FLAG = Path({flag!r})


def called(name):
    with LOG.open("a") as f:
        f.write(name + "\\n")


def calls():
    return LOG.read_text().split() if LOG.exists() else []


@activity
def read(key: str) -> int:
    called("read")
    return len(calls())


@activity(effect=True)
def send(to: str) -> str:
    called("send")
    return f"sent to {{to}}"


def fail_once():
    if not FLAG.exists():
        FLAG.write_text("failed once")
        raise RuntimeError("boom")
'''


def activities(tmp_path: Path) -> str:
    return ACTIVITIES.format(log=str(tmp_path / "calls.log"), flag=str(tmp_path / "flag"))


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().split() if log.exists() else []


# -- recording ---------------------------------------------------------------------------
def test_journaled_calls_are_recorded_in_order(make_flow, tmp_path):
    flow = make_flow(activities(tmp_path), '''
    @step
    def work(to: str) -> list:
        return [read("a"), send(to), read("b")]

    pipeline = work
    ''')

    run = flow.run("ann")

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, [1, "sent to ann", 3])
    assert journal_of(run) == [
        ("work", 0, "read", False, "done", 1),
        ("work", 1, "send", True, "done", "sent to ann"),
        ("work", 2, "read", False, "done", 3),
    ]
    entry = JournalEntry.objects.get(run_id=run.id, seq=1)
    assert entry.args_hash == digest(["send", ["ann"], {}])
    assert entry.attempt == 1


def test_async_steps_journal_async_activities(make_flow):
    flow = make_flow('''
    import asyncio

    from flowops import activity, step

    @activity(name="geo.lookup")
    async def lookup(city: str) -> dict:
        await asyncio.sleep(0)
        return {"city": city, "lat": 1.5}

    @activity(effect=True)
    async def notify(text: str) -> bool:
        return True

    @step
    async def work(city: str) -> list:
        found = await lookup(city)
        return [found, await notify(city)]

    pipeline = work
    ''')

    run = flow.run("Oslo")

    assert (run.status, run.output) == (Run.Status.SUCCEEDED,
                                        [{"city": "Oslo", "lat": 1.5}, True])
    assert journal_of(run) == [
        ("work", 0, "geo.lookup", False, "done", {"city": "Oslo", "lat": 1.5}),
        ("work", 1, "notify", True, "done", True),
    ]


def test_a_failing_activity_is_journaled_as_an_error(make_flow):
    flow = make_flow('''
    from flowops import activity, step

    @activity
    def lookup(key: str) -> int:
        raise LookupError(f"no {key}")

    @step
    def work(key: str) -> int:
        return lookup(key)

    pipeline = work
    ''')

    run = flow.run("k")

    assert run.status == Run.Status.FAILED
    assert run.error == {"step_key": "work", "type": "LookupError", "message": "no k"}
    entry = JournalEntry.objects.get(run_id=run.id)
    assert (entry.call, entry.state, entry.result, entry.error) == (
        "lookup", "error", None, {"type": "LookupError", "message": "no k"})


def test_a_step_without_journaled_calls_writes_no_entries(make_flow):
    flow = make_flow('''
    from flowops import step

    @step
    def plain(x: int) -> int:
        return x

    pipeline = plain
    ''')

    run = flow.run(1)

    assert run.status == Run.Status.SUCCEEDED
    assert JournalEntry.objects.count() == 0


# -- a retry after an exception: reads afresh, effects reused ----------------------------
def test_a_retry_reads_afresh_and_reuses_effects(make_flow, tmp_path):
    flow = make_flow(activities(tmp_path), '''
    @step(max_retries=1, retry_backoff_s=0.01)
    def work(to: str) -> list:
        result = [read("a"), send(to)]
        fail_once()
        return result

    pipeline = work
    ''')

    run = flow.run("bob")

    assert run.status == Run.Status.SUCCEEDED
    assert calls(tmp_path) == ["read", "send", "read"]
    # The second read saw the log after the first read and the send: a fresh call.
    assert run.output == [3, "sent to bob"]
    assert journal_of(run) == [("work", 0, "read", False, "done", 3),
                               ("work", 1, "send", True, "done", "sent to bob")]
    assert steps_of(run)["work"].retries == 1


def test_resume_after_a_failure_does_not_repeat_effects(make_flow, tmp_path):
    flow = make_flow(activities(tmp_path), '''
    @step
    def work(to: str) -> str:
        sent = send(to)
        fail_once()
        return sent

    pipeline = work
    ''')
    failed = flow.run("cy")
    assert failed.status == Run.Status.FAILED
    assert calls(tmp_path) == ["send"]

    run_resume(run_id=failed.id)

    run = Run.objects.get(pk=failed.id)
    assert (run.status, run.output) == (Run.Status.SUCCEEDED, "sent to cy")
    assert calls(tmp_path) == ["send"]
    assert steps_of(run)["work"].attempt == 2


def test_resume_after_a_failure_reads_afresh(make_flow, tmp_path):
    flow = make_flow(activities(tmp_path), '''
    @step
    def work(to: str) -> int:
        value = read("a")
        fail_once()
        return value

    pipeline = work
    ''')
    failed = flow.run("cy")
    assert (failed.status, calls(tmp_path)) == (Run.Status.FAILED, ["read"])

    run_resume(run_id=failed.id)

    run = Run.objects.get(pk=failed.id)
    assert calls(tmp_path) == ["read", "read"]
    assert (run.status, run.output) == (Run.Status.SUCCEEDED, 2)


def test_a_retry_calls_an_effect_that_failed_again(make_flow):
    flow = make_flow('''
    from flowops import activity, step

    CALLS = []

    @activity(effect=True)
    def charge(amount: int) -> str:
        CALLS.append(amount)
        if len(CALLS) == 1:
            raise ConnectionError("gateway down")
        return "charged"

    @step(max_retries=1, retry_backoff_s=0.01)
    def pay(amount: int) -> str:
        return charge(amount)

    pipeline = pay
    ''')

    run = flow.run(5)

    assert flow.module.CALLS == [5, 5]
    assert (run.status, run.output) == (Run.Status.SUCCEEDED, "charged")


# -- non-determinism ---------------------------------------------------------------------
def _diverging_flow(make_flow, tmp_path):
    return make_flow(activities(tmp_path), '''
    @step
    def work(to: str) -> int:
        return read(to)

    pipeline = work
    ''')


def test_a_replay_making_another_call_raises_non_determinism(make_flow, tmp_path):
    # given a journal that recorded another call at seq 0 of this step
    flow = _diverging_flow(make_flow, tmp_path)
    run = flow.create("a")
    JournalEntry.objects.create(run=run, scope="work", seq=0, call="fetch_price",
                                args_hash=digest(["fetch_price", ["a"], {}]),
                                state=JournalEntry.State.DONE, result=9, attempt=1)

    # when
    run_start(run)

    # then
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    assert run.error == {
        "step_key": "work", "type": "NonDeterminismError",
        "message": "replay of step 'work' diverged at call 0: the journal has "
                   "fetch_price(...) and the code now makes read(...) (different call)"}
    assert calls(tmp_path) == []
    assert statuses(run) == {"work": "failed"}
    assert journal_of(run) == [("work", 0, "fetch_price", False, "done", 9)]


def test_a_replay_with_other_arguments_raises_non_determinism(make_flow, tmp_path):
    flow = _diverging_flow(make_flow, tmp_path)
    run = flow.create("b")
    JournalEntry.objects.create(run=run, scope="work", seq=0, call="read",
                                args_hash=digest(["read", ["a"], {}]),
                                state=JournalEntry.State.DONE, result=9, attempt=1)

    run_start(run)

    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    assert run.error["type"] == "NonDeterminismError"
    assert run.error["message"].endswith("(different arguments)")
    assert calls(tmp_path) == []


def test_a_matching_journal_entry_is_replayed_not_called(make_flow, tmp_path):
    flow = _diverging_flow(make_flow, tmp_path)
    run = flow.create("a")
    JournalEntry.objects.create(run=run, scope="work", seq=0, call="read",
                                args_hash=digest(["read", ["a"], {}]),
                                state=JournalEntry.State.DONE, result=9, attempt=1)

    run_start(run)

    run.refresh_from_db()
    assert (run.status, run.output) == (Run.Status.SUCCEEDED, 9)
    assert calls(tmp_path) == []


def test_non_determinism_is_not_retried(make_flow, tmp_path):
    flow = make_flow(activities(tmp_path), '''
    @step(max_retries=3, retry_backoff_s=0.01)
    def work(to: str) -> int:
        return read(to)

    pipeline = work
    ''')
    run = flow.create("a")
    JournalEntry.objects.create(run=run, scope="work", seq=0, call="other",
                                args_hash="0" * 64, state=JournalEntry.State.DONE,
                                result=1, attempt=1)

    run_start(run)

    run.refresh_from_db()
    assert run.error["type"] == "NonDeterminismError"
    assert steps_of(run)["work"].retries == 0


# -- a crash: the whole journal replays --------------------------------------------------
CRASHING = '''
import os
import signal

import flowops


@activity
def lookup(key: str) -> int:
    called("lookup")
    raise LookupError(f"no {{key}}")


@activity(effect=True)
def mark(value: float) -> str:
    called("mark")
    if {kill_inside_effect} and not FLAG.exists():
        FLAG.write_text("crashed")
        os.kill(os.getpid(), signal.SIGKILL)
    return "marked"


@step
def work(x: int) -> dict:
    when, ident, number = flowops.now(), flowops.uuid(), flowops.random()
    try:
        lookup("k")
        missing = ""
    except LookupError as exc:
        missing = str(exc)
    return {{"when": when, "uuid": ident, "random": number,
            "types": [type(v).__name__ for v in (when, ident, number)],
            "read": read("a"), "missing": missing, "mark": mark(number)}}


pipeline = work
'''


def _crash(make_flow, tmp_path, *, fault: str, kill_inside_effect: bool):
    """Run the script in a child process that dies mid-step, against this test's database."""
    flow = make_flow(activities(tmp_path), CRASHING.format(
        kill_inside_effect=kill_inside_effect))
    db = connection.settings_dict
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "settings.test", "FLOWOPS_FAULT": fault,
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}
    done = subprocess.run([sys.executable, "manage.py", "runflow", str(flow.path),
                           "--input-json", "1"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == -9, done.stderr
    return Run.objects.get()


def test_resume_after_a_crash_replays_the_journal(make_flow, tmp_path):
    # given a process killed right after the effect ``mark`` returned
    crashed = _crash(make_flow, tmp_path, fault="after_activity:mark", kill_inside_effect=False)
    assert crashed.status == Run.Status.RUNNING
    assert statuses(crashed) == {"work": "running"}
    recorded = {call: result for _, _, call, _, _, result in journal_of(crashed)}
    assert list(recorded) == ["flowops.now", "flowops.uuid", "flowops.random", "lookup",
                              "read", "mark"]
    assert calls(tmp_path) == ["lookup", "read", "mark"]

    # when
    run_resume(run_id=crashed.id)

    # then nothing journaled ran again and every value is the recorded one
    run = Run.objects.get(pk=crashed.id)
    assert run.status == Run.Status.SUCCEEDED
    assert calls(tmp_path) == ["lookup", "read", "mark"]
    assert run.output == {"when": recorded["flowops.now"], "uuid": recorded["flowops.uuid"],
                          "random": recorded["flowops.random"], "read": 2,
                          "types": ["datetime", "UUID", "float"],
                          "missing": "no k", "mark": "marked"}
    row = steps_of(run)["work"]
    assert (row.attempt, row.lost) == (2, 1)


def test_an_effect_interrupted_before_its_result_is_not_repeated(make_flow, tmp_path):
    # given a process killed inside the effect: an intent without a result
    crashed = _crash(make_flow, tmp_path, fault="", kill_inside_effect=True)
    assert journal_of(crashed)[-1][2:5] == ("mark", True, "intent")

    run_resume(run_id=crashed.id)

    run = Run.objects.get(pk=crashed.id)
    assert run.status == Run.Status.SUCCEEDED
    assert calls(tmp_path) == ["lookup", "read", "mark"]
    assert run.output["mark"] is None  # uncertain: not repeated, no result
    assert journal_of(run)[-1][2:5] == ("mark", True, "intent")
