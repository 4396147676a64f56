"""Workers that die mid-step: recovery runs each completed step exactly once (CONTRACTS.md §6).

Each test starts its own workers, since it kills them.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.runs.models import Run
from apps.runs.services import runs as run_services
from apps.workflows.services import workflow_version_from_path
from tests.integration.helpers import describe, start_run, step_row, wait_for_run, wait_until
from workers.orchestrator import recover_stuck_task

pytestmark = pytest.mark.integration

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
    return x * 10


@step
def last(x: int) -> str:
    record("last")
    return f"result={x}"


pipeline = first >> slow >> last
"""


def test_resume_after_the_whole_worker_was_killed_mid_step(start_worker, effects, write_flow):
    # given a worker running `slow`
    doomed = start_worker()
    run = start_run(write_flow(SLOW), input=1)
    wait_until(lambda: effects.count("slow:start") == 1, "slow started")

    # when the whole worker (main process and pool children) is SIGKILLed
    doomed.kill()
    assert step_row(run, "slow").status == "running"
    effects.set_flag("release", "yes")
    start_worker()
    run_services.run_resume(run_id=run.id)

    # then the run finishes; completed steps ran once, the killed one started twice
    run = wait_for_run(run.id)
    assert (run.status, run.output) == ("succeeded", "result=20"), describe(run.id)
    assert effects.counts() == {"first": 1, "slow:start": 2, "slow:done": 1, "last": 1}
    assert len(set(effects.pids("slow:start"))) == 2  # the killed process, then the new one
    slow = step_row(run, "slow")
    assert (slow.status, slow.attempt, slow.lost) == ("succeeded", 2, 1)
    assert (step_row(run, "first").attempt, step_row(run, "last").attempt) == (1, 1)


def test_periodic_recovery_redispatches_a_run_whose_worker_died(start_worker, effects,
                                                                write_flow, settings):
    # given a short heartbeat timeout, here and on the workers
    settings.FLOWOPS_STEP_HEARTBEAT_TIMEOUT = 1.0
    env = {"FLOWOPS_STEP_HEARTBEAT_TIMEOUT": "1"}
    doomed = start_worker(env=env)
    run = start_run(write_flow(SLOW), input=1)
    wait_until(lambda: effects.count("slow:start") == 1, "slow started")

    # when the worker dies and the recovery task runs on a new worker until it acts
    doomed.kill()
    effects.set_flag("release", "yes")
    start_worker(env=env)
    wait_until(lambda: run.id in recover_stuck_task.delay().get(timeout=30),
               "the recovery task re-dispatched the run")

    # then the run finishes from its checkpoints
    run = wait_for_run(run.id)
    assert (run.status, run.output) == ("succeeded", "result=20"), describe(run.id)
    assert effects.counts() == {"first": 1, "slow:start": 2, "slow:done": 1, "last": 1}
    assert (step_row(run, "slow").attempt, step_row(run, "slow").lost) == (2, 1)
    # the run is not stalled any more: recovery leaves it alone
    assert run_services.recover_stuck(driver="celery") == []


SUICIDE = """
@step
def first(x: int) -> int:
    record("first")
    return x + 1


@step
def boom(x: int) -> int:
    record("boom:start")
    os.kill(os.getpid(), 9)
    record("boom:done")
    return x


@step
def last(x: int) -> int:
    record("last")
    return x


pipeline = first >> boom >> last
"""


def test_a_step_that_kills_its_pool_process_fails_after_max_attempts(start_worker, effects,
                                                                     write_flow, settings):
    # given a step that SIGKILLs its own pool process every time
    assert settings.FLOWOPS_MAX_STEP_ATTEMPTS == 3
    start_worker()

    # when it runs (reject_on_worker_lost redelivers its message each time)
    run = wait_for_run(start_run(write_flow(SUICIDE), input=1).id)

    # then the third loss fails the step and the run, and nothing after it ran
    assert run.status == "failed", describe(run.id)
    assert run.error == {"step_key": "boom", "type": "WorkerLost",
                         "message": "worker lost 3 times in step boom"}
    boom = step_row(run, "boom")
    assert (boom.status, boom.attempt, boom.lost) == ("failed", 3, 2)
    assert step_row(run, "last").status == "pending"
    assert effects.counts() == {"first": 1, "boom:start": 3}


MIDDLE = """
from flowops import activity


@activity(name="charge", effect=True)
def charge(amount: int) -> str:
    record("charge")
    return f"charged {amount}"


@step
def first(x: int) -> int:
    record("first")
    return x + 1


@step
def pay(x: int) -> str:
    record("pay:start")
    receipt = charge(x)
    record("pay:done")
    return receipt


@step
def last(receipt: str) -> str:
    record("last")
    return receipt.upper()


pipeline = first >> pay >> last
"""


ASYNC_MIDDLE = """
import asyncio

from flowops import activity


@activity(name="charge", effect=True)
async def charge(amount: int) -> str:
    await asyncio.to_thread(record, "charge")
    return f"charged {amount}"


@step
def first(x: int) -> int:
    record("first")
    return x + 1


@step
async def pay(x: int) -> str:
    await asyncio.to_thread(record, "pay:start")
    receipt = await charge(x)
    await asyncio.to_thread(record, "pay:done")
    return receipt


@step
def last(receipt: str) -> str:
    record("last")
    return receipt.upper()


pipeline = first >> pay >> last
"""


@pytest.mark.parametrize("script", [MIDDLE, ASYNC_MIDDLE], ids=["sync", "async"])
def test_effect_is_not_repeated_when_the_process_dies_right_after_it(start_worker, effects,
                                                                     write_flow, script):
    # given a worker that dies right after the `charge` effect (the test fault hook)
    start_worker(env={"FLOWOPS_FAULT": "after_activity:charge"})

    # when the run goes through (the message is redelivered; the step is taken over)
    run = wait_for_run(start_run(write_flow(script), input=41).id)

    # then the step ran twice but its effect once: the replay used the journal
    assert (run.status, run.output) == ("succeeded", "CHARGED 42"), describe(run.id)
    assert effects.counts() == {"first": 1, "pay:start": 2, "charge": 1, "pay:done": 1,
                                "last": 1}
    pay = step_row(run, "pay")
    assert (pay.attempt, pay.lost) == (2, 1)


MAP_WITH_SLOW_ITEM = """
@step
def double(x: int) -> int:
    record(f"double:{x}")
    if x == 3:
        wait_for_flag("release")
    return x * 2


@step
def total(xs: list[int]) -> int:
    record("total")
    return sum(xs)


pipeline = Step.map_over("each", double) >> total
"""


def test_resume_after_a_kill_inside_a_map_reruns_only_the_killed_item(start_worker, effects,
                                                                      write_flow):
    # given a map whose item 2 is running when its worker is killed, the others done
    doomed = start_worker()
    run = start_run(write_flow(MAP_WITH_SLOW_ITEM), input=[1, 2, 3, 4])
    done = ["each[0]/double", "each[1]/double", "each[3]/double"]
    wait_until(lambda: run.steps.filter(key__in=done, status="succeeded").count() == 3
               and effects.count("double:3") == 1, "items 0, 1, 3 done and item 2 started")
    doomed.kill()

    # when a new worker comes and the run is resumed
    effects.set_flag("release", "yes")
    start_worker()
    run_services.run_resume(run_id=run.id)

    # then only the killed item runs again, and the map joins all four
    run = wait_for_run(run.id)
    assert (run.status, run.output) == ("succeeded", 20), describe(run.id)
    assert step_row(run, "each").output == [2, 4, 6, 8]
    assert effects.counts() == {"double:1": 1, "double:2": 1, "double:3": 2, "double:4": 1,
                                "total": 1}
    assert [step_row(run, f"each[{i}]/double").attempt for i in range(4)] == [1, 1, 2, 1]


FAILS_THEN_HANGS = """
@step
def flaky(x: int) -> int:
    record("flaky:start")
    mode = flag("mode")
    if mode is None:
        raise RuntimeError("not yet")
    if mode == "hang":
        wait_for_flag("release")
    record("flaky:done")
    return x + 1


pipeline = flaky
"""


def test_worker_loss_limit_counts_losses_not_earlier_failed_attempts(start_worker, effects,
                                                                     write_flow):
    # given a step that failed twice in its own code, each time resumed by a user
    doomed = start_worker()
    run = wait_for_run(start_run(write_flow(FAILS_THEN_HANGS), input=1).id)
    assert run.status == "failed"
    run_services.run_resume(run_id=run.id)
    run = wait_for_run(run.id, statuses={"failed"})
    assert effects.count("flaky:start") == 2
    # when the third attempt's worker is killed once
    effects.set_flag("mode", "hang")
    run_services.run_resume(run_id=run.id)
    wait_until(lambda: effects.count("flaky:start") == 3, "attempt 3 started")
    doomed.kill()
    effects.set_flag("release", "yes")
    start_worker()
    run_services.run_resume(run_id=run.id)

    # then that is its first loss: the step is taken over and completes
    run = wait_for_run(run.id)
    assert (run.status, run.output) == ("succeeded", 2), describe(run.id)
    assert effects.counts() == {"flaky:start": 4, "flaky:done": 1}
    flaky = step_row(run, "flaky")
    assert (flaky.attempt, flaky.lost) == (4, 1)


MAP_FLOW = """
@step
def first(n: int) -> list[int]:
    record("first")
    return list(range(1, n + 1))


@step
def double(x: int) -> int:
    record(f"double:{x}")
    return x * 2


@step
def total(xs: list[int]) -> int:
    record("total")
    return sum(xs)


pipeline = first >> Step.map_over("each", double) >> total
"""

# One of each kind of node: a step in a chain, a decision that replaces itself with a
# chord, a member of the chord's header, and the join (the chord's body).
EVERY_KIND = ["first", "each@items", "each[1]/double", "each"]


@pytest.mark.parametrize("key", EVERY_KIND)
def test_death_right_after_a_checkpoint_resends_the_continuation_without_rerunning(
        start_worker, effects, write_flow, settings, key):
    # given a worker whose pool process dies right after `key` is checkpointed, and no
    # second chance: a takeover would fail the run (FLOWOPS_MAX_STEP_ATTEMPTS=1)
    start_worker(env={"FLOWOPS_FAULT": f"after_checkpoint:{key}",
                      "FLOWOPS_MAX_STEP_ATTEMPTS": "1"})

    # when the redelivered message finds `key` done but its continuation never sent
    run = wait_for_run(start_run(write_flow(MAP_FLOW), input=2).id)

    # then it sends the continuation: nothing runs twice, and `key` was not taken over
    assert (run.status, run.output) == ("succeeded", 6), describe(run.id)
    assert effects.counts() == {"first": 1, "double:1": 1, "double:2": 1, "total": 1}
    assert (step_row(run, key).attempt, step_row(run, key).lost) == (1, 0)


def _running_run_never_dispatched(path) -> Run:
    """A run marked running whose dispatch was lost (its starter died after the commit)."""
    version, loaded = workflow_version_from_path(path)
    run = run_services.run_create(version=version, loaded=loaded, input=2)
    Run.objects.filter(pk=run.id).update(status="running", dispatch_generation=1,
                                         started_at=timezone.now() - timedelta(seconds=5))
    return run


def test_recovery_dispatches_a_running_run_whose_canvas_never_reached_the_broker(
        start_worker, effects, write_flow, settings):
    # given a stalled run that nothing is working on
    settings.FLOWOPS_STEP_HEARTBEAT_TIMEOUT = 1.0
    start_worker()
    run = _running_run_never_dispatched(write_flow(MAP_FLOW))

    # when recovery looks for stalled runs
    recovered = run_services.recover_stuck(driver="celery")

    # then it dispatches the run, and the worker runs every step once
    assert recovered == [run.id]
    run = wait_for_run(run.id)
    assert (run.status, run.output) == ("succeeded", 6), describe(run.id)
    assert effects.counts() == {"first": 1, "double:1": 1, "double:2": 1, "total": 1}


def test_recovery_does_not_dispatch_again_before_the_fresh_canvas_starts(
        flushed_redis, celery_driver, effects, write_flow, settings):
    # given a stalled run, recovered once (no worker has picked the canvas up yet)
    settings.FLOWOPS_STEP_HEARTBEAT_TIMEOUT = 1.0
    run = _running_run_never_dispatched(write_flow(MAP_FLOW))
    assert run_services.recover_stuck(driver="celery") == [run.id]

    # when the next recovery tick comes
    again = run_services.recover_stuck(driver="celery")

    # then the run is not dispatched a second time (CONTRACTS.md §6: "dispatches it once")
    assert again == []


INLINED = """
@step
def a(x: int) -> int:
    record("a")
    return x + 1


@step
def b(x: int) -> int:
    record("b")
    return x + 1


@step
def c(x: int) -> int:
    record("c:start")
    if seen("c:start") == 1:
        os.kill(os.getpid(), 9)
    return x + 1


@step
def d(x: int) -> int:
    record("d")
    return x + 1


pipeline = a >> b >> c >> d
"""


def test_a_worker_that_dies_in_a_link_it_ran_itself_is_taken_over_from_the_first_link(
        start_worker, effects, write_flow):
    # given a chain whose links a worker runs in one process, and c kills that process once
    start_worker()

    # when the first link's message comes back (reject_on_worker_lost)
    run = wait_for_run(start_run(write_flow(INLINED), input=0).id)

    # then the done links are skipped, c is taken over, and each step ran once but c
    assert (run.status, run.output) == ("succeeded", 4), describe(run.id)
    assert effects.counts() == {"a": 1, "b": 1, "c:start": 2, "d": 1}
    assert effects.pids("a") == effects.pids("b") == effects.pids("c:start")[:1]
    c = step_row(run, "c")
    assert (c.attempt, c.lost) == (2, 1)
