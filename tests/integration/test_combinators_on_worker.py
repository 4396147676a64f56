"""Every combinator on a real worker, compared with the embedded driver on the same script."""

from __future__ import annotations

import pytest

from apps.runs.services import runs as run_services
from tests.integration.helpers import (
    contexts,
    describe,
    run_embedded,
    snapshot,
    start_run,
    step_row,
    wait_for_run,
    wait_until,
)

pytestmark = pytest.mark.integration


def run_on_worker(path, input=None):
    run = start_run(path, input=input)
    assert run.driver == "celery"
    return wait_for_run(run.id)


def assert_same_as_embedded(settings, path, celery_run, input=None):
    embedded = run_embedded(settings, path, input=input)
    assert embedded.status == celery_run.status
    assert embedded.output == celery_run.output
    assert snapshot(embedded) == snapshot(celery_run)
    assert contexts(embedded) == contexts(celery_run)
    return embedded


SEQUENCE = """
@step
def parse(text: str) -> int:
    record("parse")
    return int(text)


@step
def double(x: int) -> int:
    record("double")
    return x * 2


@step
def describe(x: int) -> str:
    record("describe")
    return f"value={x}"


pipeline = parse >> double >> describe
"""


def test_sequence_runs_each_step_once_and_matches_embedded(worker, effects, write_flow,
                                                            settings):
    path = write_flow(SEQUENCE)

    run = run_on_worker(path, "21")

    assert (run.status, run.output, run.error) == ("succeeded", "value=42", None)
    assert snapshot(run) == {"double": ("succeeded", 42), "describe": ("succeeded", "value=42"),
                             "parse": ("succeeded", 21)}
    assert effects.counts() == {"parse": 1, "double": 1, "describe": 1}
    assert {s.attempt for s in run.steps.all()} == {1}
    assert_same_as_embedded(settings, path, run, "21")
    assert effects.counts() == {"parse": 2, "double": 2, "describe": 2}


PARALLEL = """
@step
def parse(text: str) -> int:
    return int(text)


@step
def double(x: int) -> int:
    record("double")
    return x * 2


@step
def inc(x: int) -> int:
    record("inc")
    return x + 1


@step
def square(x: int) -> int:
    record("square")
    return x * x


@step
def combine(parts: dict) -> int:
    return parts["d"] + parts["s"]


pipeline = parse >> Step.parallel("fan", {"d": double, "s": inc >> square}) >> combine
"""


def test_parallel_joins_branch_outputs(worker, effects, write_flow, settings):
    path = write_flow(PARALLEL)

    run = run_on_worker(path, "3")

    assert (run.status, run.output) == ("succeeded", 22)
    assert snapshot(run) == {
        "parse": ("succeeded", 3), "fan": ("succeeded", {"d": 6, "s": 16}),
        "fan/d/double": ("succeeded", 6), "fan/s/inc": ("succeeded", 4),
        "fan/s/square": ("succeeded", 16), "combine": ("succeeded", 22)}
    assert effects.counts() == {"double": 1, "inc": 1, "square": 1}
    assert_same_as_embedded(settings, path, run, "3")


MAP = """
@step
def make_items(n: int) -> list[int]:
    return list(range(n))


@step
def double(x: int) -> int:
    record(f"double:{x}")
    return x * 2


@step
def inc(x: int) -> int:
    return x + 1


@step
def total(xs: list[int]) -> int:
    return sum(xs)


pipeline = make_items >> Step.map_over("each", double >> inc) >> total
"""


def test_map_over_twenty_items_runs_each_item_once(worker, effects, write_flow, settings):
    path = write_flow(MAP)

    run = run_on_worker(path, 20)

    assert (run.status, run.output) == ("succeeded", 400)
    assert step_row(run, "each").output == [2 * i + 1 for i in range(20)]
    assert step_row(run, "each@items").output == list(range(20))
    items = {f"each[{i}]/{name}" for i in range(20) for name in ("double", "inc")}
    assert set(snapshot(run)) == {"make_items", "each", "each@items", "total", *items}
    assert effects.counts() == {f"double:{i}": 1 for i in range(20)}
    assert_same_as_embedded(settings, path, run, 20)


def test_map_over_no_items_goes_straight_to_the_join(worker, effects, write_flow, settings):
    path = write_flow(MAP)

    run = run_on_worker(path, 0)

    assert (run.status, run.output) == ("succeeded", 0)
    assert snapshot(run) == {"make_items": ("succeeded", []), "each@items": ("succeeded", []),
                             "each": ("succeeded", []), "total": ("succeeded", 0)}
    assert effects.counts() == {}
    assert_same_as_embedded(settings, path, run, 0)


TOLERANT_MAP = """
@step
def double(x: int) -> int:
    record(f"double:{x}")
    if x == 2:
        raise ValueError("two is not allowed")
    return x * 2


@step
def inc(x: int) -> int:
    record(f"inc:{x}")
    return x + 1


pipeline = Step.map_over("each", double >> inc, on_item_failure="none")
"""


def test_map_item_failure_with_on_item_failure_none_fails_only_that_item(
        worker, effects, write_flow, settings):
    path = write_flow(TOLERANT_MAP)

    run = run_on_worker(path, [1, 2, 3])

    assert (run.status, run.output) == ("succeeded", [3, None, 7]), describe(run.id)
    rows = snapshot(run)
    assert rows["each[1]/double"][0] == "failed"
    assert rows["each[1]/inc"] == ("skipped", None)
    assert effects.counts() == {"double:1": 1, "double:2": 1, "double:3": 1, "inc:2": 1,
                                "inc:6": 1}
    assert_same_as_embedded(settings, path, run, [1, 2, 3])


BRANCH = """
@step
def parse(text: str) -> int:
    return int(text)


@step
def negate(x: int) -> int:
    record("negate")
    return -x


@step
def inc(x: int) -> int:
    record("inc")
    return x + 1


@step
def keep(x: int) -> int:
    record("keep")
    return x


def size(x, context):
    return "big" if x > 10 else ("small" if x > 0 else "zero")


sign = Step.branch_on("sign", size, {"big": negate, "small": inc},
                      default_branch_pipeline=keep)
pipeline = parse >> sign
"""


@pytest.mark.parametrize(("text", "output", "chosen", "effect"), [
    ("21", -21, "big", "negate"),
    ("3", 4, "small", "inc"),
    ("0", 0, "_default", "keep"),
])
def test_branch_on_runs_only_the_chosen_branch(worker, effects, write_flow, settings,
                                               text, output, chosen, effect):
    path = write_flow(BRANCH)

    run = run_on_worker(path, text)

    assert (run.status, run.output) == ("succeeded", output)
    leaf = {"big": "negate", "small": "inc", "_default": "keep"}[chosen]
    assert snapshot(run) == {"parse": ("succeeded", int(text)), "sign": ("succeeded", output),
                             "sign@choice": ("succeeded", chosen),
                             f"sign/{chosen}/{leaf}": ("succeeded", output)}
    assert effects.counts() == {effect: 1}
    assert_same_as_embedded(settings, path, run, text)


LOOP = """
@step
def parse(text: str) -> int:
    return int(text)


@step
def inc(x: int) -> int:
    record(f"inc:{x}")
    return x + 1


grow = Step.loop_until("grow", inc, lambda out, context: out >= 5, max_loops=10)
pipeline = parse >> grow
"""


def test_loop_until_checkpoints_each_iteration(worker, effects, write_flow, settings):
    path = write_flow(LOOP)

    run = run_on_worker(path, "1")

    assert (run.status, run.output) == ("succeeded", 5)
    rows = snapshot(run)
    assert rows == {
        "parse": ("succeeded", 1), "grow": ("succeeded", 5),
        "grow[0]/inc": ("succeeded", 2), "grow[0]@exit": ("succeeded",
                                                          {"exit": False, "next_input": 2}),
        "grow[1]/inc": ("succeeded", 3), "grow[1]@exit": ("succeeded",
                                                          {"exit": False, "next_input": 3}),
        "grow[2]/inc": ("succeeded", 4), "grow[2]@exit": ("succeeded",
                                                          {"exit": False, "next_input": 4}),
        "grow[3]/inc": ("succeeded", 5), "grow[3]@exit": ("succeeded",
                                                          {"exit": True, "next_input": None}),
    }
    assert effects.counts() == {"inc:1": 1, "inc:2": 1, "inc:3": 1, "inc:4": 1}
    assert_same_as_embedded(settings, path, run, "1")


LOOP_TOO_LONG = """
@step
def inc(x: int) -> int:
    record("inc")
    return x + 1


pipeline = Step.loop_until("grow", inc, lambda out, context: False, max_loops=3)
"""


def test_loop_until_fails_at_max_loops(worker, effects, write_flow, settings):
    path = write_flow(LOOP_TOO_LONG)

    run = run_on_worker(path, 0)

    assert run.status == "failed"
    assert run.error["step_key"] == "grow[2]@exit"
    assert "max_loops=3" in run.error["message"]
    assert effects.counts() == {"inc": 3}
    embedded = run_embedded(settings, path, input=0)
    assert (embedded.status, embedded.error) == (run.status, run.error)
    assert set(snapshot(embedded)) == set(snapshot(run))


CACHED = """
@step
def parse(text: str) -> int:
    return int(text)


@step
def slow_square(x: int) -> int:
    record(f"square:{x}")
    return x * x


pipeline = parse >> Step.cached(slow_square)
"""


def test_cached_step_is_computed_once_across_processes(worker, effects, write_flow,
                                                       settings):
    path = write_flow(CACHED)

    first = run_on_worker(path, "7")
    # the embedded driver in this process hits the entry the worker wrote
    embedded = run_embedded(settings, path, input="7")
    again = run_on_worker(path, "7")
    other = run_on_worker(path, "8")

    assert [r.output for r in (first, embedded, again, other)] == [49, 49, 49, 64]
    assert [step_row(r, "slow_square").cache_hit for r in (first, embedded, again, other)] \
        == [False, True, True, False]
    assert snapshot(first) == snapshot(embedded) == snapshot(again)
    assert effects.counts() == {"square:7": 1, "square:8": 1}


HUMAN = """
class Approval(BaseModel):
    ok: bool
    note: str


@step
def parse(text: str) -> int:
    return int(text)


@step
def after(approval: Approval) -> str:
    record("after")
    return f"{approval.note}:{approval.ok}"


review = Step.human_in_the_loop("review", message_for_user="check it", input_schema=Approval)
pipeline = parse >> review >> after
"""


def test_human_in_the_loop_pauses_then_approval_finishes_on_the_worker(worker, effects,
                                                                       write_flow, settings):
    path = write_flow(HUMAN)

    run = run_on_worker(path, "5")
    assert (run.status, run.paused_step_key, run.pause_message) == ("paused", "review",
                                                                    "check it")
    assert step_row(run, "review").status == "pending"
    assert effects.count("after") == 0

    run_services.run_approve(run_id=run.id, input={"ok": True, "note": "fine"})
    run = wait_for_run(run.id)

    assert (run.status, run.output) == ("succeeded", "fine:True")
    assert snapshot(run) == {"parse": ("succeeded", 5),
                             "review": ("succeeded", {"ok": True, "note": "fine"}),
                             "after": ("succeeded", "fine:True")}
    assert effects.count("after") == 1


def test_human_in_the_loop_rejection_fails_the_run(worker, effects, write_flow):
    path = write_flow(HUMAN)
    run = run_on_worker(path, "5")
    assert run.status == "paused"

    run = run_services.run_reject(run_id=run.id, reason="too risky")

    assert run.status == "failed"
    assert run.error == {"step_key": "review", "type": "Rejected",
                         "message": "rejected: too risky"}
    assert step_row(run, "review").status == "failed"
    assert step_row(run, "after").status == "pending"
    assert effects.count("after") == 0


NESTED = """
@step
def split(n: int) -> list[int]:
    return list(range(1, n + 1))


@step
def inc(x: int) -> int:
    record("inc")
    return x + 1


@step
def double(x: int) -> int:
    record(f"double:{x}")
    return x * 2


@step
def merge(parts: dict) -> dict:
    return {"loops": parts["loops"], "doubles": parts["doubles"]}


grow = Step.loop_until("grow", inc, lambda out, context: out % 3 == 0, max_loops=5)
fan = Step.parallel("fan", {
    "loops": Step.map_over("per_item", grow),
    "doubles": Step.map_over("inner", double, max_concurrency=2),
})
pipeline = split >> fan >> merge
"""


def test_nested_map_inside_parallel_and_loop_inside_map_item(worker, effects, write_flow,
                                                             settings):
    path = write_flow(NESTED)

    run = run_on_worker(path, 4)

    assert (run.status, run.output) == ("succeeded", {"loops": [3, 3, 6, 6],
                                                      "doubles": [2, 4, 6, 8]})
    rows = snapshot(run)
    # item 2 starts at 3: 4, 5, 6 -> three iterations
    assert [rows[f"fan/loops/per_item[2]/grow[{i}]/inc"] for i in range(3)] == [
        ("succeeded", 4), ("succeeded", 5), ("succeeded", 6)]
    assert "fan/loops/per_item[2]/grow[3]/inc" not in rows
    assert rows["fan/loops/per_item[2]/grow"] == ("succeeded", 6)
    assert rows["fan/doubles/inner@items"] == ("succeeded", [1, 2, 3, 4])
    assert effects.counts() == {"inc": 8, "double:1": 1, "double:2": 1, "double:3": 1,
                                "double:4": 1}
    assert all(status == "succeeded" for status, _ in rows.values())
    assert_same_as_embedded(settings, path, run, 4)


CONTEXT = """
class Ctx(PipelineContext):
    seen: list[str] = []
    total: int = 0
    notes: dict[str, int] = {}


context_model = Ctx


@step
def start(x: int, context: Ctx) -> int:
    context.seen = [*context.seen, "start"]
    return x


@step
def left(x: int, context: Ctx) -> int:
    context.total = x * 2
    return x * 2


@step
def right(x: int, context: Ctx) -> int:
    context.notes = {**context.notes, "right": x}
    return x + 1


@step
def spread(parts: dict) -> list[int]:
    return [parts["l"], parts["r"]]


@step
def tag(x: int, context: Ctx) -> int:
    context.notes = {**context.notes, f"item{x}": x}
    return x


@step
def finish(xs: list[int], context: Ctx) -> dict:
    return {"xs": xs, "context": context.model_dump(mode="json")}


pipeline = (start >> Step.parallel("fan", {"l": left, "r": right}) >> spread
            >> Step.map_over("each", tag) >> finish)
"""


def test_context_changes_of_branches_and_items_merge_as_in_embedded(worker, effects,
                                                                     write_flow, settings):
    path = write_flow(CONTEXT)

    run = run_on_worker(path, 5)

    assert run.status == "succeeded", describe(run.id)
    assert run.output == {"xs": [10, 6], "context": {
        "initial_prompt": None, "scratchpad": {}, "seen": ["start"], "total": 10,
        "notes": {"right": 5, "item10": 10, "item6": 6}}}
    assert_same_as_embedded(settings, path, run, 5)


RETRIES = """
@activity(name="lookup")
def lookup(x: int) -> int:
    record("lookup")
    return x


@activity(name="notify", effect=True)
def notify(x: int) -> str:
    record("notify")
    return "sent"


@step(max_retries=2, retry_backoff_s=0.01)
def shaky(x: int) -> int:
    record("shaky:start")
    lookup(x)
    notify(x)
    if seen("shaky:start") < 3:
        raise RuntimeError("not yet")
    return x + 1


pipeline = shaky
"""


def test_step_retries_on_the_worker_rerun_reads_but_reuse_effects(worker, effects,
                                                                  write_flow):
    run = run_on_worker(write_flow(RETRIES), 1)

    assert (run.status, run.output) == ("succeeded", 2), describe(run.id)
    assert effects.counts() == {"shaky:start": 3, "lookup": 3, "notify": 1}
    shaky = step_row(run, "shaky")
    assert (shaky.attempt, shaky.retries) == (1, 2)


HUMAN_IN_BRANCH = """
class Approval(BaseModel):
    ok: bool


@step
def parse(text: str) -> int:
    return int(text)


@step
def double(x: int) -> int:
    record("double")
    return x * 2


@step
def after(approval: Approval) -> str:
    record("after")
    return f"approved={approval.ok}"


@step
def combine(parts: dict) -> str:
    return f"{parts['a']}/{parts['b']}"


review = Step.human_in_the_loop("review", message_for_user="ok?", input_schema=Approval)
pipeline = parse >> Step.parallel("fan", {"a": double, "b": review >> after}) >> combine
"""


def test_human_in_the_loop_inside_a_parallel_branch(worker, effects, write_flow, settings):
    path = write_flow(HUMAN_IN_BRANCH)

    run = run_on_worker(path, "4")
    assert (run.status, run.paused_step_key) == ("paused", "fan/b/review"), describe(run.id)
    run_services.run_approve(run_id=run.id, input={"ok": True})
    run = wait_for_run(run.id)

    assert (run.status, run.output) == ("succeeded", "8/approved=True"), describe(run.id)
    assert effects.counts() == {"double": 1, "after": 1}
    embedded = run_embedded(settings, path, input="4")
    assert (embedded.status, embedded.paused_step_key) == ("paused", "fan/b/review")
    run_services.run_approve(run_id=embedded.id, input={"ok": True})
    embedded.refresh_from_db()
    assert (embedded.status, embedded.output) == (run.status, run.output)
    assert snapshot(embedded) == snapshot(run)


HUMAN_BESIDE_SLOW = """
class Approval(BaseModel):
    ok: bool


@step
def slow(x: int) -> int:
    record("slow:start")
    wait_for_flag("release")
    record("slow:done")
    return x * 2


@step
def after(approval: Approval) -> str:
    record("after")
    return f"approved={approval.ok}"


@step
def combine(parts: dict) -> str:
    record("combine")
    return f"{parts['a']}/{parts['b']}"


review = Step.human_in_the_loop("review", message_for_user="ok?", input_schema=Approval)
pipeline = Step.parallel("fan", {"a": slow, "b": review >> after}) >> combine
"""


def test_approval_while_a_sibling_branch_still_runs_completes_the_join(worker, effects,
                                                                       write_flow):
    # given a parallel whose branch b paused for approval while branch a still runs
    run = start_run(write_flow(HUMAN_BESIDE_SLOW), input=3)
    run = wait_for_run(run.id)
    assert (run.status, run.paused_step_key) == ("paused", "fan/b/review"), describe(run.id)
    wait_until(lambda: effects.count("slow:start") == 1, "slow started")

    # when the run is approved, and only then branch a finishes
    run_services.run_approve(run_id=run.id, input={"ok": True})
    wait_until(lambda: effects.count("after") == 1, "after ran")
    effects.set_flag("release", "yes")

    # then the join runs and the run succeeds (well before any recovery would act)
    run = wait_for_run(run.id, timeout=5)
    assert (run.status, run.output) == ("succeeded", "6/approved=True"), describe(run.id)
    assert effects.counts() == {"slow:start": 1, "slow:done": 1, "after": 1, "combine": 1}


THROTTLED = """
import time


@step
def split(n: int) -> list[int]:
    return list(range(n))


@step
def nap(x: int) -> int:
    record(f"start:{x}")
    time.sleep(0.2)
    if x == 3 and seen("start:3") == 1:
        raise RuntimeError("item 3 fails once")
    return x * 10


pipeline = split >> Step.map_over("each", nap, max_concurrency=2)
"""


def _overlap(run) -> int:
    """The most item steps that ran at the same time."""
    spans = [(s.started_at, s.finished_at) for s in run.steps.filter(
        key__endswith="/nap", started_at__isnull=False, finished_at__isnull=False)]
    return max(sum(1 for s, f in spans if s <= start < f) for start, _ in spans)


def test_max_concurrency_sends_the_next_branch_as_each_one_ends_also_after_a_resume(
        start_worker, effects, write_flow):
    # given a worker with room for 4 tasks and a map limited to 2 items at a time
    start_worker(concurrency=4)
    path = write_flow(THROTTLED)

    # when item 3 fails once, and the run is resumed
    failed = run_on_worker(path, 8)
    assert (failed.status, failed.error["step_key"]) == ("failed", "each[3]/nap")
    assert _overlap(failed) <= 2
    run_services.run_resume(run_id=failed.id)
    run = wait_for_run(failed.id)

    # then it finishes, never more than 2 items at once, each item done once
    assert (run.status, run.output) == ("succeeded", [x * 10 for x in range(8)]), describe(run.id)
    assert _overlap(run) <= 2
    assert effects.count("start:3") == 2
    assert all(effects.count(f"start:{x}") == 1 for x in range(8) if x != 3)
