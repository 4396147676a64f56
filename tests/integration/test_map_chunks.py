"""A map's items in chunks on a real worker (workers/canvas.py): one message carries several
items, each still claimed and checkpointed on its own (CONTRACTS.md §6).

Each test starts its own worker: they count the messages a worker received in its log, set
the inline time budget, or kill the worker.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from apps.runs.services import runs as run_services
from tests.integration.conftest import ROOT, VENV_BIN, worker_env
from tests.integration.helpers import (
    describe,
    run_embedded,
    start_run,
    step_row,
    wait_for_run,
    wait_until,
)

pytestmark = pytest.mark.integration

# No spill on a slow machine unless a test wants one.
PATIENT = {"FLOWOPS_INLINE_SECONDS": "60"}


def received(worker, task: str) -> int:
    """How many messages of ``task`` the worker took (its log at level INFO)."""
    return len(re.findall(rf"Task {re.escape(task)}\[[0-9a-f-]+\] received", worker.log()))


def owners(run, keys: list[str]) -> list[int]:
    return [step_row(run, key).owner_pid for key in keys]


def item_keys(items: range, name: str = "double") -> list[str]:
    return [f"each[{i}]/{name}" for i in items]


CHUNKED = """
@step
def double(x: int) -> int:
    record(f"double:{x}")
    return x * 2


pipeline = Step.map_over("each", double, chunk_size=4)
"""


def test_a_chunked_map_runs_each_chunk_in_one_message_and_joins_in_item_order(
        start_worker, effects, write_flow, settings):
    # given a map of 10 items in chunks of 4
    worker = start_worker(env=PATIENT)
    path = write_flow(CHUNKED)

    # when it runs on the worker
    run = wait_for_run(start_run(path, input=list(range(10))).id)

    # then the output is in item order, each item ran once, and 3 messages carried them
    assert (run.status, run.output) == ("succeeded", [x * 2 for x in range(10)]), describe(run.id)
    assert effects.counts("double:") == {f"double:{x}": 1 for x in range(10)}
    assert received(worker, "flowops.items") == 3
    assert received(worker, "flowops.step") == 0
    for chunk in (range(0, 4), range(4, 8), range(8, 10)):
        assert len(set(owners(run, item_keys(chunk)))) == 1
    assert [step_row(run, k).attempt for k in item_keys(range(10))] == [1] * 10
    assert step_row(run, "each").branches_open == 0
    # and the embedded driver, which does not chunk, gives the same result
    assert run_embedded(settings, path, input=list(range(10))).output == run.output


TOLERANT = """
@step
def double(x: int) -> int:
    record(f"double:{x}")
    if x == 1:
        raise ValueError("no 1")
    return x * 2


pipeline = Step.map_over("each", double, chunk_size=3, on_item_failure="none")
"""


def test_a_tolerated_item_failure_does_not_stop_the_rest_of_its_chunk(start_worker, effects,
                                                                      write_flow):
    # given one chunk of 3 items whose item 1 fails, in a map that tolerates it
    worker = start_worker(env=PATIENT)

    # when it runs
    run = wait_for_run(start_run(write_flow(TOLERANT), input=[0, 1, 2]).id)

    # then item 2 ran after it in the same message, and the map joined all three
    assert (run.status, run.output) == ("succeeded", [0, None, 4]), describe(run.id)
    assert effects.counts("double:") == {"double:0": 1, "double:1": 1, "double:2": 1}
    assert step_row(run, "each[1]/double").status == "failed"
    assert received(worker, "flowops.items") == 1


SUICIDE_IN_CHUNK = """
@step
def double(x: int) -> int:
    record(f"start:{x}")
    if x == 3 and seen("start:3") == 1:
        os.kill(os.getpid(), 9)
    record(f"done:{x}")
    return x * 2


pipeline = Step.map_over("each", double, chunk_size=6)
"""


def test_a_process_killed_in_the_middle_of_a_chunk_is_taken_over_item_by_item(
        start_worker, effects, write_flow):
    # given one chunk of 6 items whose item 3 kills its pool process the first time
    start_worker(env=PATIENT)

    # when the chunk's message comes back (reject_on_worker_lost)
    run = wait_for_run(start_run(write_flow(SUICIDE_IN_CHUNK), input=list(range(6))).id)

    # then the done items are skipped, item 3 is taken over, every effect happened once
    assert (run.status, run.output) == ("succeeded", [x * 2 for x in range(6)]), describe(run.id)
    assert effects.counts("done:") == {f"done:{x}": 1 for x in range(6)}
    assert effects.counts("start:") == {**{f"start:{x}": 1 for x in range(6)}, "start:3": 2}
    first_pid = effects.pids("start:0")[0]
    assert [effects.pids(f"start:{x}")[0] for x in range(4)] == [first_pid] * 4
    assert [(step_row(run, k).attempt, step_row(run, k).lost) for k in item_keys(range(6))] \
        == [(1, 0)] * 3 + [(2, 1)] + [(1, 0)] * 2


BLOCKED_IN_CHUNK = """
@step
def double(x: int) -> int:
    record(f"start:{x}")
    if x == 2:
        wait_for_flag("release")
    record(f"done:{x}")
    return x * 2


pipeline = Step.map_over("each", double, chunk_size=6)
"""


def test_a_chunk_whose_whole_worker_was_killed_is_resumed_item_by_item(
        start_worker, effects, write_flow):
    # given a chunk of 6 items whose worker is SIGKILLed while item 2 runs
    doomed = start_worker(env=PATIENT)
    run = start_run(write_flow(BLOCKED_IN_CHUNK), input=list(range(6)))
    wait_until(lambda: effects.count("start:2") == 1, "item 2 started")
    doomed.kill()
    assert step_row(run, "each[2]/double").status == "running"

    # when a new worker comes and the run is resumed
    effects.set_flag("release", "yes")
    start_worker(env=PATIENT)
    run_services.run_resume(run_id=run.id)

    # then items 0 and 1 are not run again, item 2 is taken over, items 3-5 run once
    run = wait_for_run(run.id)
    assert (run.status, run.output) == ("succeeded", [x * 2 for x in range(6)]), describe(run.id)
    assert effects.counts("done:") == {f"done:{x}": 1 for x in range(6)}
    assert effects.counts("start:") == {**{f"start:{x}": 1 for x in range(6)}, "start:2": 2}
    assert [step_row(run, k).attempt for k in item_keys(range(6))] == [1, 1, 2, 1, 1, 1]


SLOW_FIRST = """
@step
def double(x: int) -> int:
    record(f"start:{x}")
    if x == 0:
        time.sleep(0.5)  # longer than the worker's inline budget
    if x == 1:
        wait_for_flag("release")
    return x * 2


pipeline = Step.map_over("each", double, chunk_size=3)
"""


def test_a_chunk_past_its_time_budget_sends_its_other_items_to_other_processes(
        start_worker, effects, write_flow):
    # given a worker of two processes, an inline budget of 0.2 s and a chunk of 3 items
    # whose first item takes 0.5 s and whose second waits for a flag
    worker = start_worker(concurrency=2, env={"FLOWOPS_INLINE_SECONDS": "0.2"})
    run = start_run(write_flow(SLOW_FIRST), input=[0, 1, 2])

    # when item 2 is done while item 1 still waits (impossible were they still one message)
    # (item 1's message may be taken a moment after item 2's: wait for both)
    wait_until(lambda: run.steps.filter(key="each[2]/double", status="succeeded").exists()
               and step_row(run, "each[1]/double").status == "running",
               "item 2 done while item 1 waits")
    effects.set_flag("release", "yes")

    # then the run finishes; items 1 and 2 went out as messages of their own
    run = wait_for_run(run.id)
    assert (run.status, run.output) == ("succeeded", [0, 2, 4]), describe(run.id)
    assert received(worker, "flowops.items") == 3
    assert len(set(owners(run, item_keys(range(1, 3))))) == 2
    assert effects.counts("start:") == {"start:0": 1, "start:1": 1, "start:2": 1}


THROTTLED = """
@step
def nap(x: int) -> int:
    record(f"start:{x}")
    time.sleep(0.1)
    return x * 10


pipeline = Step.map_over("each", nap, max_concurrency=2, chunk_size=3)
"""


def _overlap(run) -> int:
    """The most items that ran at the same time."""
    spans = [(s.started_at, s.finished_at) for s in run.steps.filter(key__endswith="/nap")]
    return max(sum(1 for s, f in spans if s <= start < f) for start, _ in spans)


def test_max_concurrency_with_chunks_runs_at_most_n_items_at_once_in_fewer_messages(
        start_worker, effects, write_flow):
    # given a worker with room for 4 tasks, a map of 8 items, 2 at a time, chunks of 3
    worker = start_worker(concurrency=4, env=PATIENT)

    # when it runs
    run = wait_for_run(start_run(write_flow(THROTTLED), input=list(range(8))).id)

    # then never more than 2 items ran at once, each once, in at most 3 items per message
    assert (run.status, run.output) == ("succeeded", [x * 10 for x in range(8)]), describe(run.id)
    assert _overlap(run) <= 2
    assert effects.counts("start:") == {f"start:{x}": 1 for x in range(8)}
    messages = received(worker, "flowops.items")
    assert 3 <= messages < 8
    assert received(worker, "flowops.step") == 0
    join = step_row(run, "each")
    assert (join.branches_open, join.branches_sent) == (0, 8)


@pytest.mark.parametrize(("bad", "shown"), [("0", "0"), ("-1", "-1"), ("2.5", "2.5"),
                                            ("'4'", "'4'")])
def test_runflow_refuses_a_bad_chunk_size_naming_the_argument(celery_driver, flushed_redis,
                                                               write_flow, bad, shown):
    path = write_flow(f"""
    @step
    def double(x: int) -> int:
        return x * 2


    pipeline = Step.map_over("each", double, chunk_size={bad})
    """)

    done = subprocess.run([str(VENV_BIN / "python"), "manage.py", "runflow", str(path),
                           "--input-json", "[1, 2]"], cwd=ROOT, env=worker_env(),
                          capture_output=True, text=True, timeout=60)

    assert done.returncode == 2, done.stderr
    assert f"map_over 'each': chunk_size must be a positive int, got {shown}" in done.stderr
    assert str(path) in done.stderr
