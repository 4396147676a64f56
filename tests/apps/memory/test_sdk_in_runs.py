"""``flowops.memory`` inside runs: writes are journaled effects committed with their entry,
so a resumed or retried run never inserts twice; rows record their run and workflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from django.conf import settings

from apps.memory.models import Row
from apps.runs.models import Run
from apps.runs.services.runs import run_resume
from tests.apps.memory.conftest import COMMITTING, child_env, rows_of
from tests.apps.runs.conftest import journal_of

pytestmark = COMMITTING
ROOT = Path(settings.BASE_DIR)

STORE = '''
from pathlib import Path

from flowops import memory, step

FLAG = Path({flag!r})


@step(max_retries={retries}, retry_backoff_s=0.01)
def save(text: str) -> dict:
    row = memory.store(table="messages", data={{"type": "question", "content": text}})
    if {fail_once} and not FLAG.exists():
        FLAG.write_text("failed once")
        raise RuntimeError("boom")
    return {{"id": row["id"], "seen": memory.count("messages")}}


pipeline = save
'''


def store_flow(make_flow, tmp_path, *, retries=0, fail_once=False):
    return make_flow(STORE.format(flag=str(tmp_path / "flag"), retries=retries,
                                  fail_once=fail_once))


def messages() -> list[dict]:
    from apps.memory.models import Table

    return rows_of(Table.objects.get(name="messages"))


def test_a_step_stores_a_row_linked_to_its_run_and_workflow(make_flow, tmp_path):
    flow = store_flow(make_flow, tmp_path)

    run = flow.run("hello")

    assert run.status == Run.Status.SUCCEEDED, run.error
    row = Row.objects.get()
    assert run.output == {"id": row.id, "seen": 1}
    assert messages() == [{"type": "question", "content": "hello"}]
    assert (row.run_id, row.workflow_id) == (run.id, flow.version.workflow_id)
    assert [e[2:5] for e in journal_of(run)] == [("memory.store", True, "done"),
                                                 ("memory.count", False, "done")]


def test_a_retry_after_an_exception_does_not_store_again(make_flow, tmp_path):
    flow = store_flow(make_flow, tmp_path, retries=1, fail_once=True)

    run = flow.run("once")

    assert run.status == Run.Status.SUCCEEDED, run.error
    assert messages() == [{"type": "question", "content": "once"}]


def test_resume_after_a_failure_does_not_store_again(make_flow, tmp_path):
    flow = store_flow(make_flow, tmp_path, fail_once=True)
    failed = flow.run("once")
    assert failed.status == Run.Status.FAILED

    run_resume(run_id=failed.id)

    assert Run.objects.get(pk=failed.id).status == Run.Status.SUCCEEDED
    assert messages() == [{"type": "question", "content": "once"}]


def test_resume_after_a_crash_right_after_the_store_does_not_store_again(make_flow, tmp_path):
    # given a process killed right after memory.store committed its row and entry
    flow = store_flow(make_flow, tmp_path)
    done = subprocess.run([sys.executable, "manage.py", "runflow", str(flow.path),
                           "--input", "crash"], cwd=ROOT, env=child_env(
                               FLOWOPS_FAULT="after_activity:memory.store"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == -9, done.stderr
    crashed = Run.objects.get()
    assert messages() == [{"type": "question", "content": "crash"}]

    # when
    run_resume(run_id=crashed.id)

    # then the store is replayed from the journal, not repeated
    run = Run.objects.get(pk=crashed.id)
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert messages() == [{"type": "question", "content": "crash"}]
    assert run.output == {"id": Row.objects.get().id, "seen": 1}


def test_a_refused_store_fails_the_step_and_stores_nothing(make_flow):
    flow = make_flow('''
    from flowops import memory, step

    @step
    def save(n: int) -> dict:
        memory.define_table("scores", columns=[{"name": "n", "type": "integer"}])
        return memory.store(table="scores", data={"n": "many"})

    pipeline = save
    ''')

    run = flow.run(1)

    assert run.status == Run.Status.FAILED
    assert run.error["type"] == "MemoryValidationError"
    assert run.error["message"] == "data.n: expected an integer, got text 'many'"
    assert Row.objects.count() == 0
    assert [e[2:5] for e in journal_of(run)] == [("memory.define_table", True, "done"),
                                                 ("memory.store", True, "error")]

