"""The ledger's two per-call statements, written once as SQL (CONTRACTS.md §8).

Every model call reserves before it is sent and settles when its usage is recorded. Built
through the ORM these were five round trips and 3.5 % of a 200 ms call on PostgreSQL
(benchmarks/RESULTS.md, "Budget ledger"); here each is one statement on PostgreSQL (a
data-modifying WITH) and one short transaction on SQLite, whose writers are serialised by
its IMMEDIATE transactions anyway. The conditions are the ones the ORM version had.
"""

from __future__ import annotations

import json
from decimal import Decimal

from django.db import connection, transaction

from apps.runs.models import Reservation, Run, RunBudget, StepRun
from apps.runs.services.steps_sql import now_sql

BUDGET = RunBudget._meta.db_table
RESERVATION = Reservation._meta.db_table
RUN = Run._meta.db_table
STEP = StepRun._meta.db_table

# The budget row holds the worst case when it fits under both limits; PostgreSQL re-checks
# this WHERE on the row after taking its lock, which makes concurrent reservations safe.
_HOLD = (f"UPDATE {BUDGET} SET reserved_usd = reserved_usd + %s, "
         f"reserved_tokens = reserved_tokens + %s WHERE run_id = %s "
         f"AND (limit_usd IS NULL OR limit_usd >= spent_usd + reserved_usd + %s) "
         f"AND (limit_tokens IS NULL OR limit_tokens >= spent_tokens + reserved_tokens + %s) "
         f"AND EXISTS (SELECT 1 FROM {RUN} r WHERE r.id = %s AND r.status = 'running')")
_INSERT = (f'INSERT INTO {RESERVATION} (run_id, step_key, attempt, "call", model, usd, tokens, '
           f"state, created_at)")


def reserve(*, run_id: str, step_key: str, attempt: int, call: str, model: str, usd: Decimal,
            tokens: int) -> Reservation | None:
    """Hold ``usd`` and ``tokens`` for one call; None when they do not fit (or the run
    stopped)."""
    hold = [usd, tokens, run_id, usd, tokens, run_id]
    row = [step_key, attempt, call, model, usd, tokens]
    if connection.vendor == "postgresql":
        sql = (f"WITH held AS ({_HOLD} RETURNING run_id) {_INSERT} SELECT run_id, %s, %s, %s, "
               f"%s, %s, %s, 'reserved', {now_sql()} FROM held RETURNING id")
        with connection.cursor() as cursor:
            cursor.execute(sql, [*hold, *row])
            found = cursor.fetchone()
    else:
        found = _reserve_sqlite(run_id, row, usd, tokens)
    if found is None:
        return None
    return Reservation(id=found[0], run_id=run_id, step_key=step_key, attempt=attempt, call=call,
                       model=model, usd=usd, tokens=tokens)


def _reserve_sqlite(run_id: str, row: list, usd: Decimal, tokens: int) -> tuple | None:
    # SQLite keeps decimals as floating point, so ``spent + reserved + x <= limit`` in SQL
    # can refuse what fits exactly (0.1 + 0.2 > 0.3). The check is made on Django's exact
    # decimals instead, inside the write transaction (IMMEDIATE: writers are serialised).
    with transaction.atomic():
        budget = RunBudget.objects.filter(run_id=run_id).first()
        running = Run.objects.filter(id=run_id, status=Run.Status.RUNNING).exists()
        if budget is None or not running or not _fits(budget, usd, tokens):
            return None
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {BUDGET} SET reserved_usd = %s, reserved_tokens = %s "
                           f"WHERE run_id = %s", [budget.reserved_usd + usd,
                                                  budget.reserved_tokens + tokens, run_id])
            cursor.execute(f"{_INSERT} VALUES (%s, %s, %s, %s, %s, %s, %s, 'reserved', "
                           f"{now_sql()}) RETURNING id", [run_id, *row])
            return cursor.fetchone()


def _fits(budget: RunBudget, usd: Decimal, tokens: int) -> bool:
    fits_usd = budget.limit_usd is None or (
        budget.spent_usd + budget.reserved_usd + usd <= budget.limit_usd)
    fits_tokens = budget.limit_tokens is None or (
        budget.spent_tokens + budget.reserved_tokens + tokens <= budget.limit_tokens)
    return fits_usd and fits_tokens


def settle(reservation: Reservation, *, usd: Decimal, tokens: int, usage: dict | None,
           step_id: int | None) -> bool:
    """Move a held reservation to spent at its actual usage, adding it to the step's cost.

    Run inside the transaction that records the call. False when it was no longer held.
    """
    now = now_sql()
    moved = (f"UPDATE {RESERVATION} SET state = 'settled', settled_usd = %s, "
             f"settled_tokens = %s, usage = %s, settled_at = {now} WHERE id = %s "
             f"AND state = 'reserved'")
    spent = (f"UPDATE {BUDGET} SET reserved_usd = reserved_usd - %s, "
             f"reserved_tokens = reserved_tokens - %s, spent_usd = spent_usd + %s, "
             f"spent_tokens = spent_tokens + %s WHERE run_id = %s")
    cost = f"UPDATE {STEP} SET cost_usd = cost_usd + %s, tokens = tokens + %s WHERE id = %s"
    moved_args = [usd, tokens, None if usage is None else json.dumps(usage), reservation.id]
    spent_args = [reservation.usd, reservation.tokens, usd, tokens, reservation.run_id]
    cost_args = [usd, tokens, step_id]
    if connection.vendor == "postgresql":
        sql = (f"WITH moved AS ({moved} RETURNING id), "
               f"spent AS ({spent} AND EXISTS (SELECT 1 FROM moved) RETURNING 1), "
               f"cost AS ({cost} AND EXISTS (SELECT 1 FROM moved) RETURNING 1) "
               f"SELECT count(*) FROM moved")
        with connection.cursor() as cursor:
            cursor.execute(sql, [*moved_args, *spent_args, *cost_args])
            return cursor.fetchone()[0] == 1
    with connection.cursor() as cursor:
        cursor.execute(moved, moved_args)
        if cursor.rowcount != 1:
            return False
        cursor.execute(spent, spent_args)
        if step_id is not None:
            cursor.execute(cost, cost_args)
    return True
