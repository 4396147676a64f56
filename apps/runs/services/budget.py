"""The budget governor's ledger (CONTRACTS.md §8): reserve, settle, release, halt.

Before a model call, its worst case is reserved with one conditional UPDATE
(``spent + reserved + x <= limit``); a reservation that would cross a limit is refused
and the run halts, so spend never exceeds the limit, across branches and workers. The
call's actual usage is settled in the transaction that records it; usage above the
reservation is an overrun and halts the run too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Now

from apps.core.exceptions import ApplicationError
from apps.runs.models import Reservation, Run, RunBudget
from apps.runs.services import ledger_sql
from flowops.exceptions import RunHalted, UserError
from flowops.usage import UsageLimits

log = logging.getLogger("flowops.budget")
ZERO = Decimal(0)
CENT_MICRO = Decimal("0.00000001")  # the ledger's precision (8 decimals)


@dataclass(frozen=True)
class Cost:
    usd: Decimal | None
    tokens: int


def budget_create(*, run: Run, limit_usd: Decimal | None, limit_tokens: int | None) -> RunBudget:
    return RunBudget.objects.create(run=run, limit_usd=limit_usd, limit_tokens=limit_tokens)


def limits_resolve(*layers: UsageLimits | None) -> UsageLimits:
    """Each limit from the first layer that sets it, most specific layer first.

    A new run's layers are: the caller's (``--budget-usd`` / ``--budget-tokens`` /
    ``Flujo(usage_limits=...)``), the workflow's defaults (admin), the script's
    module-level ``usage_limits``. USD and tokens resolve separately: an explicit USD
    limit still gets the default token limit.

    >>> limits_resolve(UsageLimits(total_cost_usd_limit=1),
    ...                UsageLimits(total_cost_usd_limit=5, total_tokens_limit=1000))
    UsageLimits(total_cost_usd_limit=Decimal('1'), total_tokens_limit=1000)
    """
    present = [layer for layer in layers if layer is not None]
    usd = next((la.total_cost_usd_limit for la in present
                if la.total_cost_usd_limit is not None), None)
    tokens = next((la.total_tokens_limit for la in present
                   if la.total_tokens_limit is not None), None)
    return UsageLimits(total_cost_usd_limit=usd, total_tokens_limit=tokens)


def reserve(*, run_id: str, step_key: str, attempt: int, call: str, model: str,
            worst: Cost) -> Reservation:
    """Hold ``worst`` against the run's limits, or halt the run and raise ``RunHalted``.

    ``worst.usd`` is None for a model without a price: refused under a USD limit.
    """
    if worst.usd is None:
        if RunBudget.objects.filter(run_id=run_id, limit_usd__isnull=False).exists():
            raise UserError(f"no price for {model}; set FLOWOPS_MODEL_PRICES")
        worst = Cost(ZERO, worst.tokens)
    # The ledger keeps 8 decimals: a worst case rounds up, never down.
    worst = Cost(worst.usd.quantize(CENT_MICRO, rounding=ROUND_CEILING), worst.tokens)
    held = ledger_sql.reserve(run_id=run_id, step_key=step_key, attempt=attempt, call=call,
                              model=model, usd=worst.usd, tokens=worst.tokens)
    if held is not None:
        return held
    raise _refused(run_id, step_key, worst)


def _refused(run_id: str, step_key: str, worst: Cost) -> RunHalted:
    run = Run.objects.get(pk=run_id)
    if run.status != Run.Status.RUNNING:
        return RunHalted(f"run {run_id} is {run.status}", run_id=run_id)
    budget = RunBudget.objects.get(run_id=run_id)
    message = (f"the next call in {step_key} (worst case ${worst.usd:.6f}, {worst.tokens} "
               f"tokens) would cross the limit: {describe(budget)}")
    halt(run_id=run_id, step_key=step_key, message=message)
    return RunHalted(message, run_id=run_id)


def describe(budget: RunBudget) -> str:
    """spent, unsettled and limit, in one line for people."""
    parts = [f"spent ${budget.spent_usd:.6f} ({budget.spent_tokens} tokens)",
             f"unsettled ${budget.reserved_usd:.6f} ({budget.reserved_tokens} tokens)"]
    limits = []
    if budget.limit_usd is not None:
        limits.append(f"${budget.limit_usd:.6f}")
    if budget.limit_tokens is not None:
        limits.append(f"{budget.limit_tokens} tokens")
    return ", ".join(parts) + f", limit {' and '.join(limits) or 'none'}"


def halt(*, run_id: str, step_key: str, message: str) -> bool:
    budget = RunBudget.objects.filter(run_id=run_id).first()
    error = {"step_key": step_key, "type": "BudgetExceeded", "message": message}
    if budget is not None:
        error.update(spent_usd=str(budget.spent_usd), unsettled_usd=str(budget.reserved_usd),
                     limit_usd=None if budget.limit_usd is None else str(budget.limit_usd),
                     spent_tokens=budget.spent_tokens, unsettled_tokens=budget.reserved_tokens,
                     limit_tokens=budget.limit_tokens)
    halted = Run.objects.filter(id=run_id, status=Run.Status.RUNNING).update(
        status=Run.Status.HALTED, finished_at=Now(), error=error)
    if halted:
        log.warning("run %s halted in %s: %s", run_id, step_key, message)
        from apps.runs.services.execution import run_ended

        run_ended(run_id)
    return bool(halted)


def settle(*, reservation: Reservation, actual: Cost, usage: dict[str, Any] | None,
           step_id: int | None) -> bool:
    """Record a call's usage against its reservation; call inside the recording transaction.

    Returns False on an overrun (usage above the reservation), after halting the run.
    """
    actual = Cost((actual.usd or ZERO).quantize(CENT_MICRO, rounding=ROUND_HALF_UP),
                  actual.tokens)
    if not ledger_sql.settle(reservation, usd=actual.usd, tokens=actual.tokens, usage=usage,
                             step_id=step_id):
        return True  # settled already (a dead owner's, at its worst case)
    if actual.usd > reservation.usd or actual.tokens > reservation.tokens:
        halt(run_id=reservation.run_id, step_key=reservation.step_key,
             message=f"overrun in {reservation.step_key}: the call used ${actual.usd:.6f} / "
                     f"{actual.tokens} tokens, above its reservation of "
                     f"${reservation.usd:.6f} / {reservation.tokens} tokens")
        return False
    return True


def release(*, reservation: Reservation) -> None:
    """Give a reservation back: the provider refused the call, nothing was billed."""
    with transaction.atomic():
        moved = Reservation.objects.filter(id=reservation.id, state=Reservation.State.RESERVED
                                           ).update(state=Reservation.State.RELEASED,
                                                    settled_at=Now())
        if moved:
            RunBudget.objects.filter(run_id=reservation.run_id).update(
                reserved_usd=F("reserved_usd") - reservation.usd,
                reserved_tokens=F("reserved_tokens") - reservation.tokens)


def settle_orphans(*, run_id: str, step_key: str | None = None, before_attempt: int | None = None
                   ) -> int:
    """Settle the reservations of dead owners at their worst case: the provider may have
    billed the call, so they are never released."""
    rows = Reservation.objects.filter(run_id=run_id, state=Reservation.State.RESERVED)
    if step_key is not None:
        rows = rows.filter(step_key=step_key)
    if before_attempt is not None:
        rows = rows.filter(attempt__lt=before_attempt)
    count = 0
    for reservation in rows:
        with transaction.atomic():
            settle(reservation=reservation, actual=Cost(reservation.usd, reservation.tokens),
                   usage={"orphaned": True}, step_id=None)
        count += 1
    return count


def budget_exhausted(run_id: str) -> RunBudget | None:
    """The run's budget when a limit is already reached (no call could fit), else None."""
    budget = RunBudget.objects.filter(run_id=run_id).first()
    if budget is None:
        return None
    over_usd = budget.limit_usd is not None and budget.spent_usd >= budget.limit_usd
    over_tokens = budget.limit_tokens is not None and budget.spent_tokens >= budget.limit_tokens
    return budget if over_usd or over_tokens else None


def budget_raise_limit(*, run_id: str, limit_usd: Decimal | None = None,
                       limit_tokens: int | None = None) -> RunBudget:
    """Set new absolute limits (``resume --budget-usd``): at least spent + unsettled."""
    with transaction.atomic():
        budget = RunBudget.objects.select_for_update().get(run_id=run_id)
        if limit_usd is not None:
            floor = budget.spent_usd + budget.reserved_usd
            if limit_usd < floor:
                raise ApplicationError(f"--budget-usd {limit_usd} is below what run {run_id} "
                                       f"has spent or holds (${floor:.6f})",
                                       {"field": "budget_usd"})
            budget.limit_usd = limit_usd
        if limit_tokens is not None:
            floor_tokens = budget.spent_tokens + budget.reserved_tokens
            if limit_tokens < floor_tokens:
                raise ApplicationError(f"--budget-tokens {limit_tokens} is below what run "
                                       f"{run_id} has used or holds ({floor_tokens})",
                                       {"field": "budget_tokens"})
            budget.limit_tokens = limit_tokens
        budget.save(update_fields=["limit_usd", "limit_tokens"])
    return budget


def spend_of(run_id: str) -> dict[str, Any]:
    budget = RunBudget.objects.filter(run_id=run_id).first()
    if budget is None:
        return {"usd": 0.0, "tokens": 0, "limit_usd": None, "limit_tokens": None}
    return {"usd": float(budget.spent_usd), "tokens": budget.spent_tokens,
            "limit_usd": None if budget.limit_usd is None else float(budget.limit_usd),
            "limit_tokens": budget.limit_tokens}


ZERO_COST = Cost(ZERO, 0)
