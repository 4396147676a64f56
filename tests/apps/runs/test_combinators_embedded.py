"""Every combinator, end to end with the embedded driver (CONTRACTS.md §3)."""

from __future__ import annotations

from apps.runs.models import Run, StepRun
from tests.apps.runs.conftest import EMBEDDED, statuses, steps_of

pytestmark = EMBEDDED

SUCCEEDED, FAILED, PENDING, SKIPPED = "succeeded", "failed", "pending", "skipped"

CONTEXT = '''
from flowops import PipelineContext, Step, step


class Ctx(PipelineContext):
    a: int = 0
    b: int = 0
    tags: list[str] = []
    items: list[int] = []


context_model = Ctx
'''


# -- sequences ---------------------------------------------------------------------------
def test_a_sequence_passes_each_output_to_the_next_step(make_flow):
    flow = make_flow('''
    from flowops import step

    @step
    def parse(text: str) -> int:
        return int(text)

    @step
    async def double(x: int) -> int:
        return x * 2

    @step
    def describe(x: int) -> str:
        return f"got {x}"

    pipeline = parse >> double >> describe
    ''')

    run = flow.run("21")

    assert (run.status, run.output, run.error) == (Run.Status.SUCCEEDED, "got 42", None)
    rows = steps_of(run)
    assert [(k, r.status, r.output, r.attempt) for k, r in rows.items()] == [
        ("parse", SUCCEEDED, 21, 1), ("double", SUCCEEDED, 42, 1),
        ("describe", SUCCEEDED, "got 42", 1)]
    assert all(r.duration_ms is not None and r.duration_ms >= 0 for r in rows.values())


def test_repeated_step_names_run_as_separate_keys(make_flow):
    flow = make_flow('''
    from flowops import step

    @step
    def inc(x: int) -> int:
        return x + 1

    pipeline = inc >> inc >> inc
    ''')

    run = flow.run(0)

    assert run.output == 3
    assert {k: r.output for k, r in steps_of(run).items()} == {"inc": 1, "inc#2": 2, "inc#3": 3}


CONCURRENCY = '''
import threading
import time

from flowops import Step, step

LOCK = threading.Lock()
RUNNING = [0]
PEAK = [0]


@step
def track(x: int) -> int:
    with LOCK:
        RUNNING[0] += 1
        PEAK[0] = max(PEAK[0], RUNNING[0])
    time.sleep(0.05)
    with LOCK:
        RUNNING[0] -= 1
    return x
'''


# -- parallel ----------------------------------------------------------------------------
def test_parallel_outputs_a_dict_of_branch_outputs(make_flow):
    flow = make_flow('''
    from flowops import Step, step

    @step
    def double(x: int) -> int:
        return x * 2

    @step
    def inc(x: int) -> int:
        return x + 1

    @step
    def total(results: dict) -> int:
        return sum(results.values())

    pipeline = Step.parallel("fan", {"d": double, "i": inc >> inc}) >> total
    ''')

    run = flow.run(10)

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, 32)
    assert {k: (r.status, r.output) for k, r in steps_of(run).items()} == {
        "fan": (SUCCEEDED, {"d": 20, "i": 12}),
        "fan/d/double": (SUCCEEDED, 20),
        "fan/i/inc": (SUCCEEDED, 11),
        "fan/i/inc#2": (SUCCEEDED, 12),
        "total": (SUCCEEDED, 32),
    }


def test_parallel_merges_context_changes_per_field_in_branch_order(make_flow):
    # "first" finishes last in time, yet "second" is later in branch order and wins on
    # the field both change; fields changed by one branch only are kept.
    flow = make_flow(CONTEXT, '''
    import time

    @step
    def first(x: int, context: Ctx) -> str:
        time.sleep(0.1)
        context.a = 1
        context.tags = ["first"]
        return "f"

    @step
    def second(x: int, context: Ctx) -> str:
        context.a = 2
        context.b = 5
        return "s"

    @step
    def report(results: dict, context: Ctx) -> list:
        return [context.a, context.b, context.tags, results]

    pipeline = Step.parallel("fan", {"first": first, "second": second}) >> report
    ''')

    run = flow.run(0, context={"a": 9})

    assert run.status == Run.Status.SUCCEEDED
    assert run.output == [2, 5, ["first"], {"first": "f", "second": "s"}]
    rows = steps_of(run)
    assert rows["fan"].context == {"a": 2, "b": 5, "tags": ["first"], "items": [],
                                   "initial_prompt": None, "scratchpad": {}}
    assert rows["fan/first/first"].context["a"] == 1
    assert rows["fan/first/first"].context["b"] == 0
    assert rows["fan/second/second"].context["tags"] == []


def test_parallel_merges_dict_fields_key_by_key(make_flow):
    flow = make_flow(CONTEXT, '''
    @step
    def left(x: int, context: Ctx) -> int:
        context.scratchpad = {**context.scratchpad, "left": 1}
        return x

    @step
    def right(x: int, context: Ctx) -> int:
        notes = dict(context.scratchpad)
        notes.pop("old")
        context.scratchpad = {**notes, "right": 2}
        return x

    pipeline = Step.parallel("fan", {"l": left, "r": right})
    ''')

    run = flow.run(0, context={"scratchpad": {"old": 0, "kept": 3}})

    assert run.status == Run.Status.SUCCEEDED
    assert steps_of(run)["fan"].context["scratchpad"] == {"kept": 3, "left": 1, "right": 2}


def test_parallel_max_concurrency_limits_branches_running_at_once(make_flow):
    flow = make_flow(CONCURRENCY, '''
    branches = {f"b{i}": track for i in range(4)}
    pipeline = Step.parallel("fan", branches, max_concurrency=2)
    ''')

    run = flow.run(1)

    assert run.status == Run.Status.SUCCEEDED
    assert run.output == {"b0": 1, "b1": 1, "b2": 1, "b3": 1}
    assert flow.module.PEAK == [2]




def test_a_failing_branch_fails_the_parallel_and_the_run(make_flow):
    flow = make_flow('''
    from flowops import Step, step

    CALLS = []

    @step
    def fine(x: int) -> int:
        CALLS.append("fine")
        return x

    @step
    def boom(x: int) -> int:
        raise ValueError(f"bad {x}")

    @step
    def after(results: dict) -> dict:
        CALLS.append("after")
        return results

    pipeline = Step.parallel("fan", {"ok": fine, "bad": boom}, max_concurrency=1) >> after
    ''')

    run = flow.run(3)

    assert (run.status, run.output) == (Run.Status.FAILED, None)
    assert run.error == {"step_key": "fan/bad/boom", "type": "ValueError", "message": "bad 3"}
    assert statuses(run) == {"fan": PENDING, "fan/ok/fine": SUCCEEDED,
                             "fan/bad/boom": FAILED, "after": PENDING}
    assert flow.module.CALLS == ["fine"]


# -- map_over ----------------------------------------------------------------------------
def test_map_over_the_input_runs_the_body_per_item_in_order(make_flow):
    flow = make_flow('''
    from flowops import Step, step

    @step
    def double(x: int) -> int:
        return x * 2

    @step
    def inc(x: int) -> int:
        return x + 1

    @step
    def split(text: str) -> list[int]:
        return [int(p) for p in text.split(",")]

    pipeline = split >> Step.map_over("each", double >> inc)
    ''')

    run = flow.run("3,1,2")

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, [7, 3, 5])
    rows = steps_of(run)
    assert rows["each@items"].output == [3, 1, 2]
    assert rows["each@items"].kind == "decision"
    assert {k: r.output for k, r in rows.items() if k.startswith("each[")} == {
        "each[0]/double": 6, "each[0]/inc": 7, "each[1]/double": 2, "each[1]/inc": 3,
        "each[2]/double": 4, "each[2]/inc": 5}


def test_map_over_a_context_field_via_iterable_input(make_flow):
    flow = make_flow(CONTEXT, '''
    @step
    def square(x: int, context: Ctx) -> int:
        context.tags = context.tags + [f"saw {x}"]
        return x * x

    pipeline = Step.map_over("each", square, iterable_input="items")
    ''')

    run = flow.run("ignored", context={"items": [2, 3], "tags": ["start"]})

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, [4, 9])
    rows = steps_of(run)
    assert rows["each@items"].output == [2, 3]
    # Both items change "tags"; item order decides: the last item's copy wins.
    assert rows["each"].context["tags"] == ["start", "saw 3"]
    assert rows["each[0]/square"].context["tags"] == ["start", "saw 2"]


def test_map_over_an_empty_list_outputs_an_empty_list(make_flow):
    flow = make_flow('''
    from flowops import Step, step

    @step
    def double(x: int) -> int:
        return x * 2

    pipeline = Step.map_over("each", double)
    ''')

    run = flow.run([])

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, [])
    assert statuses(run) == {"each": SUCCEEDED, "each@items": SUCCEEDED}


def test_map_over_a_missing_context_field_fails_naming_it(make_flow):
    flow = make_flow(CONTEXT, '''
    @step
    def double(x: int) -> int:
        return x * 2

    pipeline = Step.map_over("each", double, iterable_input="nothing")
    ''')

    run = flow.run(1)

    assert run.status == Run.Status.FAILED
    assert run.error == {"step_key": "each@items", "type": "PipelineDefinitionError",
                         "message": "map each: the context has no field 'nothing'"}
    assert statuses(run) == {"each": PENDING, "each@items": FAILED}


def test_map_over_what_is_not_a_list_fails(make_flow):
    flow = make_flow('''
    from flowops import Step, step

    @step
    def double(x: int) -> int:
        return x * 2

    pipeline = Step.map_over("each", double)
    ''')

    run = flow.run(5)

    assert run.status == Run.Status.FAILED
    assert run.error == {"step_key": "each@items", "type": "TypeError",
                         "message": "map each needs a list to map over, got int"}


def test_map_over_max_concurrency_limits_items_running_at_once(make_flow):
    flow = make_flow(CONCURRENCY, '''
    pipeline = Step.map_over("each", track, max_concurrency=2)
    ''')

    run = flow.run([1, 2, 3, 4, 5])

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, [1, 2, 3, 4, 5])
    assert flow.module.PEAK == [2]


def test_map_over_with_max_concurrency_one_runs_items_one_by_one(make_flow):
    flow = make_flow(CONCURRENCY, '''
    pipeline = Step.map_over("each", track, max_concurrency=1)
    ''')

    run = flow.run([1, 2, 3])

    assert run.output == [1, 2, 3]
    assert flow.module.PEAK == [1]


ITEMS_THAT_FAIL = '''
from flowops import Step, step

CALLS = []


@step
def invert(x: int) -> int:
    CALLS.append(x)
    return 100 // x


@step
def plus_one(x: int) -> int:
    return x + 1


@step
def after(results: list) -> list:
    return results
'''


def test_a_failing_map_item_fails_the_map_and_the_run(make_flow):
    flow = make_flow(ITEMS_THAT_FAIL, '''
    pipeline = Step.map_over("each", invert >> plus_one, max_concurrency=1) >> after
    ''')

    run = flow.run([4, 0, 5])

    assert run.status == Run.Status.FAILED
    assert run.output is None
    assert run.error == {"step_key": "each[1]/invert", "type": "ZeroDivisionError",
                         "message": "integer division or modulo by zero"}
    assert statuses(run) == {
        "each": PENDING, "each@items": SUCCEEDED, "after": PENDING,
        "each[0]/invert": SUCCEEDED, "each[0]/plus_one": SUCCEEDED,
        "each[1]/invert": FAILED, "each[1]/plus_one": PENDING,
        "each[2]/invert": PENDING, "each[2]/plus_one": PENDING,
    }
    # Items run one at a time: nothing after the failing item started.
    assert flow.module.CALLS == [4, 0]
    assert steps_of(run)["each"].output is None


def test_on_item_failure_none_gives_none_for_the_failing_item(make_flow):
    flow = make_flow(ITEMS_THAT_FAIL, '''
    pipeline = Step.map_over("each", invert >> plus_one, on_item_failure="none") >> after
    ''')

    run = flow.run([4, 0, 5])

    assert (run.status, run.output, run.error) == (Run.Status.SUCCEEDED, [26, None, 21], None)
    rows = steps_of(run)
    assert rows["each[1]/invert"].status == FAILED
    assert rows["each[1]/invert"].error["type"] == "ZeroDivisionError"
    assert rows["each[1]/plus_one"].status == SKIPPED
    assert rows["each[1]/plus_one"].output is None
    assert rows["each"].output == [26, None, 21]
    assert sorted(flow.module.CALLS) == [0, 4, 5]


def test_on_item_failure_none_skips_the_rest_of_a_nested_item(make_flow):
    flow = make_flow('''
    from flowops import Step, step

    @step
    def invert(x: int) -> int:
        return 10 // x

    @step
    def inc(x: int) -> int:
        return x + 1

    @step
    def pick(results: dict) -> list:
        return [results["a"], results["b"]]

    fan = Step.parallel("fan", {"a": invert, "b": inc})
    pipeline = Step.map_over("each", fan >> pick, on_item_failure="none")
    ''')

    run = flow.run([1, 0, 5])

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, [[10, 2], None, [2, 6]])
    item = {k: v for k, v in statuses(run).items() if k.startswith("each[1]")}
    # the sibling branch ran or was skipped, depending on which thread came first
    assert item.pop("each[1]/fan/b/inc") in (SUCCEEDED, SKIPPED)
    assert item == {"each[1]/fan": SKIPPED, "each[1]/fan/a/invert": FAILED,
                    "each[1]/pick": SKIPPED}


# -- branch_on ---------------------------------------------------------------------------
BRANCHES = '''
from flowops import Step, step

CONDITIONS = []


@step
def double(x: int) -> int:
    return x * 2


@step
def negate(x: int) -> int:
    return -x


@step
def keep(x: int) -> int:
    return x


@step
def describe(x: int) -> str:
    return f"result {x}"


def size(x, context):
    CONDITIONS.append(x)
    return {1: "small", 2: "big"}.get(x, x)
'''


def test_branch_on_runs_only_the_chosen_branch(make_flow):
    flow = make_flow(BRANCHES, '''
    sign = Step.branch_on("sign", size, {"big": negate >> double, "small": double})
    pipeline = sign >> describe
    ''')

    run = flow.run(2)

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, "result -4")
    assert {k: (r.status, r.output) for k, r in steps_of(run).items()} == {
        "sign": (SUCCEEDED, -4),
        "sign@choice": (SUCCEEDED, "big"),
        "sign/big/negate": (SUCCEEDED, -2),
        "sign/big/double": (SUCCEEDED, -4),
        "describe": (SUCCEEDED, "result -4"),
    }
    assert flow.module.CONDITIONS == [2]


def test_branch_on_with_an_unknown_key_takes_the_default(make_flow):
    flow = make_flow(BRANCHES, '''
    pipeline = Step.branch_on("sign", size, {"big": negate}, default_branch_pipeline=keep)
    ''')

    run = flow.run(7)

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, 7)
    assert statuses(run) == {"sign": SUCCEEDED, "sign@choice": SUCCEEDED,
                             "sign/_default/keep": SUCCEEDED}
    assert steps_of(run)["sign@choice"].output == "_default"


def test_branch_on_with_an_unknown_key_and_no_default_fails_naming_the_key(make_flow):
    flow = make_flow(BRANCHES, '''
    pipeline = Step.branch_on("sign", size, {"big": negate, "small": double}) >> describe
    ''')

    run = flow.run(7)

    assert run.status == Run.Status.FAILED
    assert run.output is None
    assert run.error == {
        "step_key": "sign@choice", "type": "PipelineDefinitionError",
        "message": "branch sign: unknown branch key '7' and no default (known: big, small)"}
    assert statuses(run) == {"sign": PENDING, "sign@choice": FAILED, "describe": PENDING}


# -- loop_until --------------------------------------------------------------------------
def test_loop_until_feeds_each_output_to_the_next_iteration(make_flow):
    flow = make_flow('''
    from flowops import Step, step

    @step
    def inc(x: int) -> int:
        return x + 1

    pipeline = Step.loop_until("grow", inc, lambda out, ctx: out >= 3)
    ''')

    run = flow.run(0)

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, 3)
    assert {k: r.output for k, r in steps_of(run).items()} == {
        "grow": 3,
        "grow[0]/inc": 1, "grow[0]@exit": {"exit": False, "next_input": 1},
        "grow[1]/inc": 2, "grow[1]@exit": {"exit": False, "next_input": 2},
        "grow[2]/inc": 3, "grow[2]@exit": {"exit": True, "next_input": None},
    }


def test_loop_until_uses_the_iteration_input_mapper(make_flow):
    flow = make_flow('''
    from flowops import Step, step

    SEEN = []

    @step
    def inc(x: int) -> int:
        return x + 1

    def twice(output, context, iteration):
        SEEN.append((output, iteration))
        return output * 2

    pipeline = Step.loop_until(name="grow", loop_body_pipeline=inc,
                               exit_condition_callable=lambda out, ctx: out > 10,
                               iteration_input_mapper=twice, max_loops=10)
    ''')

    run = flow.run(0)

    # 0 -> 1 (mapped to 2) -> 3 (6) -> 7 (14) -> 15: exit
    assert (run.status, run.output) == (Run.Status.SUCCEEDED, 15)
    rows = steps_of(run)
    assert [rows[f"grow[{i}]/inc"].output for i in range(4)] == [1, 3, 7, 15]
    assert [rows[f"grow[{i}]@exit"].output["next_input"] for i in range(4)] == [2, 6, 14, None]
    assert flow.module.SEEN == [(1, 1), (3, 2), (7, 3)]


def test_loop_until_carries_context_across_iterations(make_flow):
    flow = make_flow(CONTEXT, '''
    @step
    def count(x: int, context: Ctx) -> int:
        context.a += 1
        return x

    pipeline = Step.loop_until("grow", count, lambda out, ctx: ctx.a >= 4)
    ''')

    run = flow.run(8)

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, 8)
    assert steps_of(run)["grow"].context["a"] == 4
    assert steps_of(run)["grow[3]@exit"].output == {"exit": True, "next_input": None}


def test_loop_until_reaching_max_loops_fails_the_loop(make_flow):
    flow = make_flow('''
    from flowops import Step, step

    @step
    def inc(x: int) -> int:
        return x + 1

    @step
    def after(x: int) -> int:
        return x

    pipeline = Step.loop_until("grow", inc, lambda out, ctx: False, max_loops=3) >> after
    ''')

    run = flow.run(0)

    assert run.status == Run.Status.FAILED
    assert run.output is None
    assert run.error == {
        "step_key": "grow[2]@exit", "type": "RuntimeError",
        "message": "loop grow reached max_loops=3 without meeting its exit condition"}
    assert statuses(run) == {
        "grow": PENDING, "after": PENDING,
        "grow[0]/inc": SUCCEEDED, "grow[0]@exit": SUCCEEDED,
        "grow[1]/inc": SUCCEEDED, "grow[1]@exit": SUCCEEDED,
        "grow[2]/inc": SUCCEEDED, "grow[2]@exit": FAILED,
    }


# -- nesting ---------------------------------------------------------------------------
NESTED = '''
from flowops import Step, step


@step
def double(x: int) -> int:
    return x * 2


@step
def inc(x: int) -> int:
    return x + 1


@step
def pair(results: dict) -> list[int]:
    return [results["d"], results["i"]]


fan = Step.parallel("fan", {"d": double, "i": inc})
each = Step.map_over("each", fan >> pair)
'''


def test_a_map_of_parallels_nests(make_flow):
    flow = make_flow(NESTED, """
    pipeline = each
    """)

    run = flow.run([1, 5])

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, [[2, 2], [10, 6]])
    rows = steps_of(run)
    assert rows["each[1]/fan"].output == {"d": 10, "i": 6}
    assert rows["each[1]/fan/i/inc"].output == 6
    assert StepRun.objects.filter(run_id=run.id).exclude(status=SUCCEEDED).count() == 0


def test_a_branch_inside_a_map_inside_a_parallel(make_flow):
    flow = make_flow(NESTED, """
    @step
    def count(items: list) -> int:
        return len(items)

    sign = Step.branch_on("sign", lambda x, ctx: "odd" if x % 2 else "even",
                          {"odd": inc, "even": double})
    pipeline = Step.parallel("top", {"m": Step.map_over("each", sign), "n": count})
    """)

    run = flow.run([1, 2, 3])

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, {"m": [2, 4, 4], "n": 3})
    assert steps_of(run)["top/m/each[1]/sign@choice"].output == "even"




def test_a_loop_around_a_map(make_flow):
    flow = make_flow(NESTED, """
    pipeline = Step.loop_until("again", each, lambda out, ctx: True)
    """)

    run = flow.run([1, 5])

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, [[2, 2], [10, 6]])


def test_a_loop_around_a_branch(make_flow):
    flow = make_flow(NESTED, """
    sign = Step.branch_on("sign", lambda x, ctx: "up", {"up": inc})
    pipeline = Step.loop_until("grow", sign, lambda out, ctx: out >= 2)
    """)

    run = flow.run(0)

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, 2)


def test_a_loop_inside_a_loop(make_flow):
    flow = make_flow(NESTED, """
    inner = Step.loop_until("inner", inc, lambda out, ctx: out % 3 == 0)
    pipeline = Step.loop_until("outer", inner, lambda out, ctx: out >= 6)
    """)

    run = flow.run(0)

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, 6)
    assert steps_of(run)["outer"].output == 6


def test_checkpoints_that_do_not_wait_for_the_disk_give_the_same_run(make_flow, settings):
    # FLOWOPS_DURABLE_CHECKPOINTS=False takes other statements on PostgreSQL
    settings.FLOWOPS_DURABLE_CHECKPOINTS = False
    flow = make_flow('''
    from flowops import Step, step

    @step
    def split(text: str) -> list[int]:
        return [int(p) for p in text.split()]

    @step
    def double(x: int) -> int:
        return x * 2

    @step
    def total(xs: list[int]) -> int:
        return sum(xs)

    pipeline = (split >> Step.map_over("each", double) >> total
                >> Step.parallel("fan", {"a": double, "b": double}))
    ''')

    run = flow.run("1 2 3")

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, {"a": 24, "b": 24})
    assert StepRun.objects.get(run=run, key="each").branches_open == 0
    assert StepRun.objects.get(run=run, key="fan").branches_open == 0
