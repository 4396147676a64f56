"""Per-step retries with backoff, and timeouts (CONTRACTS.md §3, StepConfig)."""

from __future__ import annotations

import time

from apps.runs.models import Run
from apps.runs.selectors import step_document
from tests.apps.runs.conftest import EMBEDDED, statuses, steps_of

pytestmark = EMBEDDED

FLAKY = '''
from flowops import step

CALLS = []


def flaky(x: int, failures: int) -> int:
    CALLS.append(x)
    if len(CALLS) <= failures:
        raise ConnectionError(f"attempt {len(CALLS)} failed")
    return x * 10


@step
def after(x: int) -> int:
    return x + 1
'''


def test_a_step_is_retried_until_it_succeeds(make_flow):
    flow = make_flow(FLAKY, '''
    @step(max_retries=3, retry_backoff_s=0.01)
    def fetch(x: int) -> int:
        return flaky(x, failures=2)

    pipeline = fetch >> after
    ''')

    run = flow.run(4)

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, 41)
    assert flow.module.CALLS == [4, 4, 4]
    row = steps_of(run)["fetch"]
    assert (row.attempt, row.retries, row.output, row.error) == (1, 2, 40, None)
    assert step_document(row)["attempts"] == 3


def test_a_step_that_keeps_failing_fails_after_its_retries(make_flow):
    flow = make_flow(FLAKY, '''
    @step(max_retries=2, retry_backoff_s=0.01)
    def fetch(x: int) -> int:
        return flaky(x, failures=99)

    pipeline = fetch >> after
    ''')

    run = flow.run(4)

    assert run.status == Run.Status.FAILED
    assert run.error == {"step_key": "fetch", "type": "ConnectionError",
                         "message": "attempt 3 failed"}
    assert flow.module.CALLS == [4, 4, 4]
    row = steps_of(run)["fetch"]
    assert (row.status, row.retries, row.output) == ("failed", 2, None)
    assert "ConnectionError: attempt 3 failed" in row.error["traceback"]
    assert statuses(run)["after"] == "pending"


def test_steps_are_not_retried_by_default(make_flow):
    flow = make_flow(FLAKY, '''
    @step
    def fetch(x: int) -> int:
        return flaky(x, failures=1)

    pipeline = fetch
    ''')

    run = flow.run(4)

    assert run.status == Run.Status.FAILED
    assert flow.module.CALLS == [4]
    assert steps_of(run)["fetch"].retries == 0


def test_backoff_doubles_from_retry_backoff_s(make_flow):
    flow = make_flow(FLAKY, '''
    import time

    STARTS = []

    @step(max_retries=2, retry_backoff_s=0.1)
    def fetch(x: int) -> int:
        STARTS.append(time.monotonic())
        return flaky(x, failures=2)

    pipeline = fetch
    ''')

    run = flow.run(1)

    assert run.status == Run.Status.SUCCEEDED
    first, second, third = flow.module.STARTS
    # 0.1 s then 0.2 s, each times a jitter in [0.5, 1.5), plus the retry's bookkeeping
    assert 0.05 <= second - first < 0.5
    assert 0.1 <= third - second < 0.8


def test_a_slow_sync_step_times_out(make_flow):
    flow = make_flow('''
    import time
    from flowops import step

    @step(timeout_s=0.1)
    def slow(x: int) -> int:
        time.sleep(1)
        return x

    @step
    def after(x: int) -> int:
        return x

    pipeline = slow >> after
    ''')

    started = time.monotonic()
    run = flow.run(1)

    assert time.monotonic() - started < 0.9
    assert run.status == Run.Status.FAILED
    assert run.error == {"step_key": "slow", "type": "StepTimeout",
                         "message": "step slow ran longer than 0.1s"}
    assert steps_of(run)["slow"].output is None
    assert statuses(run) == {"slow": "failed", "after": "pending"}


def test_a_slow_async_step_times_out(make_flow):
    flow = make_flow('''
    import asyncio
    from flowops import step

    FINISHED = []

    @step(timeout_s=0.1)
    async def slow(x: int) -> int:
        await asyncio.sleep(5)
        FINISHED.append(x)
        return x

    pipeline = slow
    ''')

    started = time.monotonic()
    run = flow.run(1)

    assert time.monotonic() - started < 2
    assert run.status == Run.Status.FAILED
    assert run.error == {"step_key": "slow", "type": "StepTimeout",
                         "message": "step slow ran longer than 0.1s"}
    assert flow.module.FINISHED == []


def test_a_step_within_its_timeout_succeeds(make_flow):
    flow = make_flow('''
    import asyncio
    from flowops import step

    @step(timeout_s=5)
    def quick(x: int) -> int:
        return x + 1

    @step(timeout_s=5)
    async def quick_async(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    pipeline = quick >> quick_async
    ''')

    run = flow.run(1)

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, 3)


def test_a_timeout_is_retried_like_any_failure(make_flow):
    flow = make_flow('''
    import time
    from flowops import step

    CALLS = []

    @step(timeout_s=0.1, max_retries=1, retry_backoff_s=0.01)
    def sometimes_slow(x: int) -> int:
        CALLS.append(x)
        if len(CALLS) == 1:
            time.sleep(0.5)
        return x

    pipeline = sometimes_slow
    ''')

    run = flow.run(7)

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, 7)
    assert steps_of(run)["sometimes_slow"].retries == 1
    assert flow.module.CALLS == [7, 7]
