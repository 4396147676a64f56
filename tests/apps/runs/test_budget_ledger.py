"""The budget ledger (CONTRACTS.md §8): reserve, settle, release, halt, on PostgreSQL."""

from __future__ import annotations

import random
import threading
from decimal import Decimal

import pytest
from django.db import connection

from apps.core.exceptions import ApplicationError
from apps.runs.models import Reservation, Run, RunBudget, StepRun
from apps.runs.services.budget import (
    Cost,
    budget_raise_limit,
    release,
    reserve,
    settle,
    settle_orphans,
)
from apps.runs.services.runs import run_create, run_resume
from flowops import UsageLimits
from flowops.exceptions import RunHalted
from tests.apps.runs.conftest import EMBEDDED

pytestmark = EMBEDDED

SCRIPT = """
    from flowops import step

    @step
    def work(x: int) -> int:
        return x + 1

    pipeline = work
"""


@pytest.fixture
def running(make_flow):
    """A run in state running with the given limits (nothing executes)."""

    def make(usd: str | None = None, tokens: int | None = None) -> Run:
        flow = make_flow(SCRIPT)
        limits = UsageLimits(total_cost_usd_limit=Decimal(usd) if usd else None,
                             total_tokens_limit=tokens)
        run = run_create(version=flow.version, loaded=flow.loaded, input=1, limits=limits)
        Run.objects.filter(id=run.id).update(status=Run.Status.RUNNING)
        return run

    return make


def _reserve(run: Run, usd: str, tokens: int) -> Reservation:
    return reserve(run_id=run.id, step_key="work", attempt=1, call="ai.generate",
                   model="openai:gpt-4o-mini", worst=Cost(Decimal(usd), tokens))


def test_a_reservation_within_the_limit_is_held(running):
    run = running(usd="0.10")

    held = _reserve(run, "0.04", 100)

    budget = RunBudget.objects.get(run=run)
    assert (budget.reserved_usd, budget.reserved_tokens) == (Decimal("0.04"), 100)
    assert held.state == Reservation.State.RESERVED


def test_a_reservation_that_would_cross_the_limit_halts_the_run_and_holds_nothing(running):
    # given a run that has spent 0.07 of 0.10
    run = running(usd="0.10")
    first = _reserve(run, "0.07", 100)
    settle(reservation=first, actual=Cost(Decimal("0.07"), 90), usage=None, step_id=None)

    # when a call whose worst case is 0.04 asks
    with pytest.raises(RunHalted, match="would cross the limit"):
        _reserve(run, "0.04", 10)

    # then the run halted, saying where and how much, and nothing more is held
    run.refresh_from_db()
    budget = RunBudget.objects.get(run=run)
    assert run.status == Run.Status.HALTED
    assert run.error["step_key"] == "work"
    assert run.error["type"] == "BudgetExceeded"
    assert (run.error["spent_usd"], run.error["unsettled_usd"], run.error["limit_usd"]) == (
        "0.07000000", "0E-8", "0.10000000")
    assert budget.reserved_usd == 0
    assert Reservation.objects.filter(run=run).count() == 1


def test_a_token_limit_is_enforced_like_a_usd_limit(running):
    run = running(tokens=1000)
    _reserve(run, "0", 600)

    with pytest.raises(RunHalted):
        _reserve(run, "0", 401)

    assert Run.objects.get(pk=run.id).status == Run.Status.HALTED


def test_settling_moves_the_reservation_into_spend_on_run_and_step(running):
    run = running(usd="1")
    held = _reserve(run, "0.02", 500)
    step = StepRun.objects.get(run=run, key="work")

    ok = settle(reservation=held, actual=Cost(Decimal("0.015"), 420),
                usage={"prompt": 400, "completion": 20, "cached": 0}, step_id=step.id)

    budget = RunBudget.objects.get(run=run)
    step.refresh_from_db()
    held.refresh_from_db()
    assert ok is True
    assert (budget.spent_usd, budget.spent_tokens, budget.reserved_usd) == (
        Decimal("0.015"), 420, 0)
    assert (step.cost_usd, step.tokens) == (Decimal("0.015"), 420)
    assert (held.state, held.settled_tokens) == (Reservation.State.SETTLED, 420)


def test_usage_above_the_reservation_is_an_overrun_that_halts(running):
    run = running(usd="1")
    held = _reserve(run, "0.01", 100)

    ok = settle(reservation=held, actual=Cost(Decimal("0.02"), 150), usage=None, step_id=None)

    run.refresh_from_db()
    assert ok is False
    assert run.status == Run.Status.HALTED
    assert run.error["message"].startswith("overrun in work")


def test_released_reservations_cost_nothing(running):
    run = running(usd="1")
    held = _reserve(run, "0.5", 100)

    release(reservation=held)
    release(reservation=held)  # twice is harmless

    budget = RunBudget.objects.get(run=run)
    assert (budget.reserved_usd, budget.spent_usd) == (0, 0)


def test_reservations_of_a_dead_attempt_are_settled_at_their_worst_case(running):
    run = running(usd="1")
    _reserve(run, "0.3", 100)

    assert settle_orphans(run_id=run.id, step_key="work", before_attempt=2) == 1

    budget = RunBudget.objects.get(run=run)
    assert (budget.spent_usd, budget.spent_tokens, budget.reserved_usd) == (
        Decimal("0.3"), 100, 0)


def test_a_new_limit_must_cover_spent_and_unsettled(running):
    run = running(usd="0.10")
    _reserve(run, "0.08", 10)

    with pytest.raises(ApplicationError, match="below what run"):
        budget_raise_limit(run_id=run.id, limit_usd=Decimal("0.05"))

    assert budget_raise_limit(run_id=run.id, limit_usd=Decimal("0.5")).limit_usd == Decimal(
        "0.5")


def test_a_halted_run_resumes_only_with_a_higher_limit(running):
    # given a run halted with its whole budget spent
    run = running(usd="0.10")
    held = _reserve(run, "0.10", 10)
    settle(reservation=held, actual=Cost(Decimal("0.10"), 10), usage=None, step_id=None)
    Run.objects.filter(id=run.id).update(status=Run.Status.HALTED)

    with pytest.raises(ApplicationError, match="higher limit"):
        run_resume(run_id=run.id)

    resumed = run_resume(run_id=run.id, limits=UsageLimits(total_cost_usd_limit=Decimal("1")))
    assert resumed.status == Run.Status.SUCCEEDED
    assert RunBudget.objects.get(run=run).limit_usd == Decimal("1")


def test_a_step_of_an_exhausted_run_never_starts(make_flow):
    # given a run with a zero token budget: no model call could fit
    flow = make_flow(SCRIPT)
    run = run_create(version=flow.version, loaded=flow.loaded, input=1,
                     limits=UsageLimits(total_tokens_limit=0))

    from apps.runs.services.runs import run_start

    run_start(run)

    run.refresh_from_db()
    assert run.status == Run.Status.HALTED
    assert run.error["step_key"] == "work"
    assert StepRun.objects.get(run=run, key="work").attempt == 0


def test_racing_reservations_never_cross_the_limit(running):
    # given 16 threads reserving and settling calls of random size against $1
    run = running(usd="1")
    limit = Decimal("1")
    errors: list[BaseException] = []

    def spender(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while True:
                worst = Decimal(rng.randint(1, 90)) / 1000
                try:
                    held = _reserve(run, str(worst), 1)
                except RunHalted:
                    return
                actual = (worst * Decimal(rng.randint(50, 100)) / 100).quantize(
                    Decimal("0.00000001"))
                settle(reservation=held, actual=Cost(actual, 1), usage=None, step_id=None)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=spender, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # then spend stayed within the limit and the ledger balances
    budget = RunBudget.objects.get(run=run)
    settled = sum((r.settled_usd for r in Reservation.objects.filter(
        run=run, state=Reservation.State.SETTLED)), Decimal(0))
    assert errors == []
    assert budget.spent_usd <= limit
    assert budget.reserved_usd == 0
    assert budget.spent_usd == settled
    assert Run.objects.get(pk=run.id).status == Run.Status.HALTED


@pytest.mark.django_db(transaction=True)  # all apps: the admin needs auth
def test_the_admin_shows_spend_per_run_and_per_call(running, admin_client):
    run = running(usd="1")
    held = _reserve(run, "0.02", 50)
    settle(reservation=held, actual=Cost(Decimal("0.01"), 40), usage=None, step_id=None)

    page = admin_client.get(f"/admin/runs/run/{run.id}/change/")
    calls = admin_client.get(f"/admin/runs/reservation/?run__id__exact={run.id}")

    assert page.status_code == 200
    assert b"spend per call" in page.content
    assert calls.status_code == 200
    assert b"ai.generate" in calls.content


def test_recovery_settles_what_a_halted_run_holds_for_a_dead_attempt(running):
    # given a run halted while a dead attempt's call was still reserved
    from apps.runs.services.runs import recover_stuck

    run = running(usd="1")
    _reserve(run, "0.3", 100)
    Run.objects.filter(id=run.id).update(status=Run.Status.HALTED)

    # when the periodic recovery runs (no step of the run is alive)
    recover_stuck()

    # then the call is settled at its worst case: the run's spend is final
    budget = RunBudget.objects.get(run=run)
    assert (budget.spent_usd, budget.reserved_usd) == (Decimal("0.3"), 0)
    assert set(Reservation.objects.filter(run=run).values_list("state", flat=True)) == {
        Reservation.State.SETTLED}
