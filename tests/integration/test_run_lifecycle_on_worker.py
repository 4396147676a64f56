"""Resume after a failure and cancel a running run, on a real worker."""

from __future__ import annotations

import pytest

from apps.core.exceptions import ApplicationError
from apps.runs.services import runs as run_services
from tests.integration.helpers import describe, start_run, step_row, wait_for_run, wait_until

pytestmark = pytest.mark.integration

FLAKY = """
@step
def first(x: int) -> int:
    record("first")
    return x + 1


@step
def flaky(x: int) -> int:
    record("flaky:start")
    if flag("fixed") is None:
        raise RuntimeError("the flag is not set yet")
    record("flaky:done")
    return x * 2


@step
def last(x: int) -> str:
    record("last")
    return f"got {x}"


pipeline = first >> flaky >> last
"""


def test_resume_after_a_failure_skips_completed_steps(worker, effects, write_flow):
    # given a run that failed in `flaky`
    run = wait_for_run(start_run(write_flow(FLAKY), input=4).id)
    assert run.status == "failed", describe(run.id)
    assert run.error == {"step_key": "flaky", "type": "RuntimeError",
                         "message": "the flag is not set yet"}
    assert step_row(run, "flaky").status == "failed"
    assert step_row(run, "last").status == "pending"
    assert effects.counts() == {"first": 1, "flaky:start": 1}

    # when the cause is fixed and the run resumed
    effects.set_flag("fixed", "yes")
    resumed = run_services.run_resume(run_id=run.id)
    assert resumed.status == "running"
    run = wait_for_run(run.id)

    # then it succeeds without running `first` again
    assert (run.status, run.output, run.error) == ("succeeded", "got 10", None)
    assert effects.counts() == {"first": 1, "flaky:start": 2, "flaky:done": 1, "last": 1}
    assert {s.key: (s.status, s.attempt) for s in run.steps.all()} == {
        "first": ("succeeded", 1), "flaky": ("succeeded", 2), "last": ("succeeded", 1)}


SLOW = """
@step
def first(x: int) -> int:
    record("first")
    return x + 1


@step
def slow(x: int) -> int:
    record("slow:start")
    wait_for_flag("release")
    record("slow:done")
    return x


@step
def last(x: int) -> int:
    record("last")
    return x


@step
def later(x: int) -> int:
    record("later")
    return x


pipeline = first >> slow >> last >> later
"""


def test_cancel_a_running_run_stops_the_steps_after_the_running_one(worker, effects,
                                                                    write_flow):
    # given a run in its `slow` step
    run = start_run(write_flow(SLOW), input=1)
    wait_until(lambda: effects.count("slow:start") == 1, "slow started")

    # when it is cancelled and the running step then ends
    cancelled = run_services.run_cancel(run_id=run.id)
    assert cancelled.status == "cancelled"
    effects.set_flag("release", "yes")
    worker.wait_for_log(f"ignore flowops.step {run.id}/last: run is cancelled")

    # then nothing after it ran and the run stays cancelled
    run.refresh_from_db()
    assert run.status == "cancelled", describe(run.id)
    assert effects.counts() == {"first": 1, "slow:start": 1, "slow:done": 1}
    assert (step_row(run, "last").status, step_row(run, "later").status) == ("cancelled",
                                                                            "cancelled")
    assert step_row(run, "last").attempt == 0
    with pytest.raises(ApplicationError, match="already cancelled"):
        run_services.run_cancel(run_id=run.id)


FLAKY_ITEM = """
@step
def double(x: int) -> int:
    record(f"double:{x}")
    if x == 2 and flag("fixed") is None:
        raise ValueError("two is not ready")
    return x * 2


@step
def total(xs: list[int]) -> int:
    record("total")
    return sum(xs)


pipeline = Step.map_over("each", double) >> total
"""


def test_resume_after_a_failed_map_item_reruns_only_the_unfinished_items(worker, effects,
                                                                         write_flow):
    # given a map whose item 1 failed (which fails the map and the run)
    run = wait_for_run(start_run(write_flow(FLAKY_ITEM), input=[1, 2, 3, 4]).id)
    assert run.status == "failed", describe(run.id)
    assert run.error == {"step_key": "each[1]/double", "type": "ValueError",
                         "message": "two is not ready"}
    # the other items may have run or met the failed run and stopped
    finished = set(run.steps.filter(status="succeeded", key__startswith="each[")
                   .values_list("key", flat=True))
    assert effects.count("total") == 0

    # when the cause is fixed and the run resumed
    effects.set_flag("fixed", "yes")
    run_services.run_resume(run_id=run.id)
    run = wait_for_run(run.id)

    # then every item ran to completion once, the failed one twice
    assert (run.status, run.output) == ("succeeded", 20), describe(run.id)
    assert effects.counts() == {"double:1": 1, "double:2": 2, "double:3": 1, "double:4": 1,
                                "total": 1}
    for key in finished:
        assert step_row(run, key).attempt == 1
    assert step_row(run, "each[1]/double").attempt == 2
