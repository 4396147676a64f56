"""``manage.py runflow`` as a subprocess against a real worker (CONTRACTS.md §2)."""

from __future__ import annotations

import json
import subprocess

import pytest

from apps.runs.models import Run
from tests.integration.conftest import ROOT, VENV_BIN, worker_env
from tests.integration.helpers import describe, wait_for_run

pytestmark = pytest.mark.integration

FLOW = """
@step
def parse(text: str) -> int:
    record("parse")
    return int(text)


@step
def square(x: int) -> int:
    if flag("hold") is not None:
        wait_for_flag("release")
    record("square")
    return x * x


pipeline = parse >> square
"""


def runflow(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "python"), "manage.py", "runflow", *args],
                          cwd=ROOT, env=worker_env(), capture_output=True, text=True,
                          timeout=timeout)


def test_runflow_waits_for_the_worker_and_prints_one_json_document(worker, effects,
                                                                   write_flow):
    path = write_flow(FLOW)

    done = runflow(str(path), "--input", "12", "--json")

    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert (document["status"], document["output"], document["error"]) == ("succeeded", 144,
                                                                            None)
    assert [(s["key"], s["status"], s["output"], s["attempts"]) for s in document["steps"]] \
        == [("parse", "succeeded", 12, 1), ("square", "succeeded", 144, 1)]
    run = Run.objects.get(pk=document["run_id"])
    assert (run.driver, run.status) == ("celery", "succeeded")
    assert effects.counts() == {"parse": 1, "square": 1}


def test_runflow_reports_a_failed_run_with_exit_code_1(worker, effects, write_flow):
    path = write_flow(FLOW)

    done = runflow(str(path), "--input", "twelve", "--json")

    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    assert document["status"] == "failed"
    assert (document["error"]["step_key"], document["error"]["type"]) == ("parse",
                                                                          "ValueError")
    assert effects.counts() == {"parse": 1}


def test_runflow_no_wait_returns_at_once_and_the_worker_finishes_the_run(worker, effects,
                                                                         write_flow):
    # given a run whose `square` step waits for the test
    path = write_flow(FLOW)
    effects.set_flag("hold", "yes")

    # when it is started without waiting
    done = runflow(str(path), "--input", "3", "--no-wait", "--json")

    # then runflow exits 0 with the run accepted, and the worker completes it later
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["status"] in ("pending", "running")
    assert document["output"] is None
    effects.set_flag("release", "yes")
    run = wait_for_run(document["run_id"])
    assert (run.status, run.output) == ("succeeded", 9), describe(run.id)
    assert effects.counts() == {"parse": 1, "square": 1}


FLAKY = """
@step
def first(x: int) -> int:
    record("first")
    return x + 1


@step
def flaky(x: int) -> int:
    record("flaky")
    if flag("fixed") is None:
        raise RuntimeError("not yet")
    return x * 2


pipeline = first >> flaky
"""


def test_runflow_run_id_resumes_a_failed_run_and_then_prints_its_stored_result(
        worker, effects, write_flow):
    # given a run that failed on the worker
    path = write_flow(FLAKY)
    failed = runflow(str(path), "--input-json", "4", "--json")
    assert failed.returncode == 1, failed.stderr
    run_id = json.loads(failed.stdout)["run_id"]

    # when the cause is fixed and runflow is given the run id
    effects.set_flag("fixed", "yes")
    resumed = runflow(str(path), "--run-id", run_id, "--json")

    # then the run resumes on the worker from its checkpoint
    assert resumed.returncode == 0, resumed.stderr
    document = json.loads(resumed.stdout)
    assert (document["run_id"], document["status"], document["output"]) == (run_id,
                                                                            "succeeded", 10)
    assert effects.counts() == {"first": 1, "flaky": 2}

    # and once more: the stored result, nothing run
    again = runflow(str(path), "--run-id", run_id, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["output"] == 10
    assert effects.counts() == {"first": 1, "flaky": 2}
