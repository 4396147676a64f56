"""The same message delivered twice runs nothing twice (CONTRACTS.md §6)."""

from __future__ import annotations

import pytest

from tests.integration.helpers import describe, start_run, step_row, wait_for_run, wait_until
from workers import executor

pytestmark = pytest.mark.integration

FLOW = """
@step
def first(n: int) -> list[int]:
    record("first")
    return list(range(1, n + 1))


@step
def double(x: int) -> int:
    record(f"double:{x}")
    return x * 2


@step
def slow(xs: list[int]) -> int:
    record("slow:start")
    wait_for_flag("release")
    record("slow:done")
    return sum(xs)


@step
def last(total: int) -> str:
    record("last")
    return f"total={total}"


pipeline = first >> Step.map_over("each", double) >> slow >> last
"""

EXPECTED_EFFECTS = {"first": 1, "double:1": 1, "double:2": 1, "double:3": 1,
                    "slow:start": 1, "slow:done": 1, "last": 1}


def send_duplicates(run_id: str, messages: list[tuple[str, str]]) -> list[str]:
    """Deliver step/decide/join messages again; return their task ids."""
    ids = []
    for task, key in messages:
        if task == "finish":
            result = executor.finish_task.apply_async(args=(run_id,))
        else:
            result = executor.TASKS[task].apply_async(args=(run_id, key))
        ids.append(result.id)
    return ids


def test_messages_delivered_again_after_the_run_finished_are_ignored(worker, effects,
                                                                     write_flow):
    # given a finished run
    effects.set_flag("release", "yes")
    run = wait_for_run(start_run(write_flow(FLOW), input=3).id)
    assert (run.status, run.output) == ("succeeded", "total=12")
    assert effects.counts() == EXPECTED_EFFECTS

    # when every one of its messages is delivered again
    ids = send_duplicates(run.id, [
        ("step", "first"), ("decide", "each@items"), ("step", "each[1]/double"),
        ("join", "each"), ("step", "slow"), ("step", "last"), ("finish", ""),
    ])

    # then each is ignored and no side effect happens again
    for task_id in ids:
        worker.wait_for_log(f"[{task_id}] ignored")
    run.refresh_from_db()
    assert (run.status, run.output) == ("succeeded", "total=12")
    assert effects.counts() == EXPECTED_EFFECTS
    assert {s.key: s.attempt for s in run.steps.all()} == {
        "first": 1, "each": 1, "each@items": 1, "each[0]/double": 1, "each[1]/double": 1,
        "each[2]/double": 1, "slow": 1, "last": 1}


def test_duplicates_delivered_while_the_run_is_in_progress_run_nothing_twice(
        worker, effects, write_flow):
    # given a run whose `slow` step is running on one pool process
    run = start_run(write_flow(FLOW), input=3)
    wait_until(lambda: effects.count("slow:start") == 1, "slow started")

    # when the done steps, the decision, the join and the running step arrive again
    ids = send_duplicates(run.id, [
        ("step", "first"), ("decide", "each@items"), ("step", "each[0]/double"),
        ("join", "each"), ("step", "slow"),
    ])

    # then the other pool process ignores every one of them
    for task_id in ids:
        worker.wait_for_log(f"[{task_id}] ignored")
    for key in ("first", "each@items", "each[0]/double", "each"):
        assert f"{run.id}/{key}: already done" in worker.log()
    assert f"{run.id}/slow: running elsewhere" in worker.log()
    assert step_row(run, "slow").status == "running", describe(run.id)
    assert effects.count("slow:start") == 1
    assert effects.count("last") == 0

    effects.set_flag("release", "yes")
    run = wait_for_run(run.id)
    assert (run.status, run.output) == ("succeeded", "total=12")
    assert effects.counts() == EXPECTED_EFFECTS
    assert step_row(run, "slow").attempt == 1
