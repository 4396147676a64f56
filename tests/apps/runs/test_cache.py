"""``Step.cached``: outputs reused across runs by step, source, input and context (§3)."""

from __future__ import annotations

import time

from apps.runs.models import CacheEntry, Run
from tests.apps.runs.conftest import EMBEDDED, steps_of

pytestmark = EMBEDDED

CACHED = '''
from flowops import PipelineContext, Step, step

CALLS = []


class Ctx(PipelineContext):
    unit: str = "m"


context_model = Ctx


@step
def square(x: int) -> int:
    CALLS.append(x)
    return x * x


@step
def label(x: int, context: Ctx) -> str:
    CALLS.append(x)
    return f"{x}{context.unit}"


@step
def after(x: int) -> int:
    return x + 1
'''


def test_the_second_run_is_a_cache_hit(make_flow):
    flow = make_flow(CACHED, "pipeline = Step.cached(square) >> after")

    first = flow.run(4)
    second = flow.run(4)

    assert (first.status, first.output) == (Run.Status.SUCCEEDED, 17)
    assert (second.status, second.output) == (Run.Status.SUCCEEDED, 17)
    assert flow.module.CALLS == [4]
    assert (steps_of(first)["square"].cache_hit, steps_of(first)["square"].output) == (False, 16)
    assert (steps_of(second)["square"].cache_hit, steps_of(second)["square"].output) == (True, 16)
    assert steps_of(second)["after"].cache_hit is False
    entry = CacheEntry.objects.get()
    assert (entry.step_name, entry.value, entry.expires_at) == ("square", 16, None)


def test_a_different_input_misses(make_flow):
    flow = make_flow(CACHED, "pipeline = Step.cached(square)")

    flow.run(4)
    run = flow.run(5)

    assert run.output == 25
    assert steps_of(run)["square"].cache_hit is False
    assert flow.module.CALLS == [4, 5]
    assert CacheEntry.objects.count() == 2


def test_an_uncached_step_runs_every_time(make_flow):
    flow = make_flow(CACHED, "pipeline = square")

    flow.run(3)
    run = flow.run(3)

    assert steps_of(run)["square"].cache_hit is False
    assert flow.module.CALLS == [3, 3]
    assert CacheEntry.objects.count() == 0


def test_an_expired_entry_misses(make_flow):
    flow = make_flow(CACHED, "pipeline = Step.cached(square, ttl_s=0.6)")

    flow.run(6)
    hit = flow.run(6)
    time.sleep(0.65)
    expired = flow.run(6)

    assert steps_of(hit)["square"].cache_hit is True
    assert steps_of(expired)["square"].cache_hit is False
    assert flow.module.CALLS == [6, 6]
    assert expired.output == 36
    entry = CacheEntry.objects.get()
    assert entry.expires_at is not None


def test_a_step_taking_the_context_is_keyed_by_it(make_flow):
    flow = make_flow(CACHED, "pipeline = Step.cached(label)")

    metres = flow.run(2, context={"unit": "m"})
    feet = flow.run(2, context={"unit": "ft"})
    metres_again = flow.run(2, context={"unit": "m"})

    assert (metres.output, feet.output, metres_again.output) == ("2m", "2ft", "2m")
    assert [steps_of(r)["label"].cache_hit for r in (metres, feet, metres_again)] == [
        False, False, True]
    assert flow.module.CALLS == [2, 2]


def test_the_cache_is_shared_by_runs_of_another_script_with_the_same_step(make_flow):
    first = make_flow(CACHED, "pipeline = Step.cached(square)", name="one.py")
    second = make_flow(CACHED, "pipeline = Step.cached(square) >> after", name="two.py")

    first.run(9)
    run = second.run(9)

    assert run.output == 82
    assert steps_of(run)["square"].cache_hit is True
    assert second.module.CALLS == []


def test_changing_the_step_source_misses(make_flow):
    old = make_flow('''
    from flowops import Step, step

    @step
    def square(x: int) -> int:
        return x * x

    pipeline = Step.cached(square)
    ''', name="old.py")
    new = make_flow('''
    from flowops import Step, step

    @step
    def square(x: int) -> int:
        return x * x + 0  # changed

    pipeline = Step.cached(square)
    ''', name="new.py")

    old.run(3)
    run = new.run(3)

    assert steps_of(run)["square"].cache_hit is False
    assert CacheEntry.objects.count() == 2


def test_a_failing_cached_step_stores_nothing(make_flow):
    flow = make_flow('''
    from flowops import Step, step

    @step
    def broken(x: int) -> int:
        raise ValueError("no")

    pipeline = Step.cached(broken)
    ''')

    run = flow.run(1)

    assert run.status == Run.Status.FAILED
    assert CacheEntry.objects.count() == 0
