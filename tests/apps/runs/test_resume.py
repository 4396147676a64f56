"""Resume after a failure: done work is kept, decisions are replayed (CONTRACTS.md §3, §6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.core.exceptions import ApplicationError
from apps.runs.models import Run
from apps.runs.services.runs import run_resume
from tests.apps.runs.conftest import EMBEDDED, statuses, steps_of

pytestmark = EMBEDDED

COUNTING = '''
from collections import Counter
from pathlib import Path

from flowops import PipelineContext, Step, step

FLAG = Path({flag!r})
CALLS = Counter()


class Ctx(PipelineContext):
    trail: list[str] = []


context_model = Ctx


def fail_once(where):
    if not FLAG.exists():
        FLAG.write_text(where)
        raise RuntimeError(f"transient failure in {{where}}")


@step
def parse(text: str, context: Ctx) -> int:
    CALLS["parse"] += 1
    context.trail = context.trail + ["parse"]
    return int(text)


@step
def flaky(x: int, context: Ctx) -> int:
    CALLS["flaky"] += 1
    fail_once("flaky")
    context.trail = context.trail + ["flaky"]
    return x * 3


@step
def finish(x: int, context: Ctx) -> str:
    CALLS["finish"] += 1
    return f"{{x}} via {{'>'.join(context.trail)}}"
'''


def counting(tmp_path: Path, *, flag_name: str = "flag") -> str:
    return COUNTING.format(flag=str(tmp_path / flag_name))


def test_resume_skips_completed_steps_and_ends_like_an_uninterrupted_run(make_flow, tmp_path):
    # given a run that failed once in its second step
    flow = make_flow(counting(tmp_path), "pipeline = parse >> flaky >> finish")
    failed = flow.run("4")
    assert failed.status == Run.Status.FAILED
    assert failed.error == {"step_key": "flaky", "type": "RuntimeError",
                            "message": "transient failure in flaky"}
    assert statuses(failed) == {"parse": "succeeded", "flaky": "failed", "finish": "pending"}
    assert dict(flow.module.CALLS) == {"parse": 1, "flaky": 1}

    # when
    resumed = run_resume(run_id=failed.id)

    # then
    assert resumed.status == Run.Status.SUCCEEDED
    assert resumed.error is None
    assert resumed.output == "12 via parse>flaky"
    assert dict(flow.module.CALLS) == {"parse": 1, "flaky": 2, "finish": 1}
    rows = steps_of(resumed)
    assert (rows["parse"].attempt, rows["flaky"].attempt, rows["finish"].attempt) == (1, 2, 1)
    assert rows["flaky"].error is None

    # and an uninterrupted run of the same script ends the same way
    fresh = flow.run("4")
    assert (fresh.status, fresh.output) == (Run.Status.SUCCEEDED, resumed.output)
    assert {k: r.output for k, r in steps_of(fresh).items()} == {
        k: r.output for k, r in rows.items()}


def test_resume_of_a_parallel_reruns_only_the_failed_branch(make_flow, tmp_path):
    flow = make_flow(counting(tmp_path), '''
    @step
    def steady(x: int) -> int:
        CALLS["steady"] += 1
        return x + 1

    pipeline = parse >> Step.parallel("fan", {"a": steady, "b": flaky}, max_concurrency=1)
    ''')
    failed = flow.run("2")
    assert failed.status == Run.Status.FAILED
    assert statuses(failed) == {"parse": "succeeded", "fan": "pending",
                                "fan/a/steady": "succeeded", "fan/b/flaky": "failed"}

    run = run_resume(run_id=failed.id)

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, {"a": 3, "b": 6})
    assert dict(flow.module.CALLS) == {"parse": 1, "steady": 1, "flaky": 2}


def test_resume_of_a_map_reruns_only_unfinished_items(make_flow, tmp_path):
    flow = make_flow(counting(tmp_path), '''
    @step
    def item(x: int) -> int:
        CALLS[f"item {x}"] += 1
        if x == 2:
            fail_once("item 2")
        return x * 10

    pipeline = Step.map_over("each", item, max_concurrency=1)
    ''')
    failed = flow.run([1, 2, 3])
    assert failed.status == Run.Status.FAILED
    assert failed.error["step_key"] == "each[1]/item"

    run = run_resume(run_id=failed.id)

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, [10, 20, 30])
    assert dict(flow.module.CALLS) == {"item 1": 1, "item 2": 2, "item 3": 1}


def test_resume_replays_the_branch_decision(make_flow, tmp_path):
    # The condition would choose differently now; the checkpointed choice stands.
    flow = make_flow(counting(tmp_path), '''
    def choose(x, context):
        CALLS["choose"] += 1
        return "first" if CALLS["choose"] == 1 else "second"

    @step
    def other(x: int) -> int:
        CALLS["other"] += 1
        return -1

    pipeline = Step.branch_on("pick", choose, {"first": flaky, "second": other})
    ''')
    failed = flow.run(5)
    assert failed.error["step_key"] == "pick/first/flaky"

    run = run_resume(run_id=failed.id)

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, 15)
    assert dict(flow.module.CALLS) == {"choose": 1, "flaky": 2}
    assert steps_of(run)["pick@choice"].output == "first"


def test_resume_replays_the_map_items(make_flow, tmp_path):
    # The items came from a context field; they are not read again on resume.
    flow = make_flow(counting(tmp_path), '''
    @step
    def item(x: int) -> int:
        CALLS[f"item {x}"] += 1
        fail_once("item")
        return x

    pipeline = Step.map_over("each", item, iterable_input="trail")
    ''')
    failed = flow.run(0, context={"trail": ["7"]})
    assert failed.status == Run.Status.FAILED

    run = run_resume(run_id=failed.id)

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, [7])
    assert steps_of(run)["each@items"].attempt == 1


def test_resume_continues_a_loop_from_its_failed_iteration(make_flow, tmp_path):
    flow = make_flow(counting(tmp_path), '''
    @step
    def grow(x: int) -> int:
        CALLS[f"grow {x}"] += 1
        if x == 2:
            fail_once("grow")
        return x + 1

    pipeline = Step.loop_until("loop", grow, lambda out, ctx: out >= 4)
    ''')
    failed = flow.run(0)
    assert failed.error["step_key"] == "loop[2]/grow"

    run = run_resume(run_id=failed.id)

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, 4)
    assert dict(flow.module.CALLS) == {"grow 0": 1, "grow 1": 1, "grow 2": 2, "grow 3": 1}


def test_a_run_that_fails_again_can_be_resumed_again(make_flow, tmp_path):
    flow = make_flow(counting(tmp_path), '''
    @step
    def twice(x: int) -> int:
        CALLS["twice"] += 1
        if CALLS["twice"] <= 2:
            raise RuntimeError(f"failure {CALLS['twice']}")
        return x

    pipeline = parse >> twice
    ''')
    run = flow.run("8")

    again = run_resume(run_id=run.id)
    assert again.status == Run.Status.FAILED
    assert again.error["message"] == "failure 2"

    done = run_resume(run_id=run.id)
    assert (done.status, done.output) == (Run.Status.SUCCEEDED, 8)
    assert dict(flow.module.CALLS) == {"parse": 1, "twice": 3}


def test_a_succeeded_run_is_not_resumed(make_flow, tmp_path):
    flow = make_flow(counting(tmp_path), "pipeline = parse")
    run = flow.run("1")

    with pytest.raises(ApplicationError, match=r"is succeeded; nothing to resume$"):
        run_resume(run_id=run.id)

    assert dict(flow.module.CALLS) == {"parse": 1}


def test_resume_of_an_unknown_run_is_refused(transactional_db):
    with pytest.raises(ApplicationError, match=r"^no run with id 'missing'$"):
        run_resume(run_id="missing")
