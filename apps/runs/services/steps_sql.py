"""The statements every step runs, written once as SQL (CONTRACTS.md §5, §6).

Each step reads its run, claims its row, reads its input and writes its checkpoint. Built
through the ORM these took about 60 % of an embedded step, more than the database spent
running them (benchmarks/RESULTS.md, "Where the time goes"), so the hot path uses these
fixed statements instead: the same tables, the same conditions, one string each. The rare
paths (take-over, failures, pauses, joins) keep the ORM.

Every statement here runs unchanged on PostgreSQL and SQLite (>= 3.38 for ``->``;
``RETURNING`` needs 3.35).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from django.db import connection, transaction

from apps.runs.models import Run, RunBudget, StepRun
from apps.runs.services.liveness import Owner

RUN = Run._meta.db_table
STEP = StepRun._meta.db_table
BUDGET = RunBudget._meta.db_table
_JSON = StepRun._meta.get_field("output")


@dataclass(frozen=True)
class Head:
    """What a delivered task needs to know about its run before anything else."""

    run: Run  # id, status and version loaded; other fields load on first access
    budget_spent: bool  # a limit is reached (the ORM re-checks before halting)


def read_head(run_id: str) -> Head | None:
    sql = (f"SELECT r.status, r.version_id, CASE WHEN "
           f"(b.limit_usd IS NOT NULL AND b.spent_usd >= b.limit_usd) OR "
           f"(b.limit_tokens IS NOT NULL AND b.spent_tokens >= b.limit_tokens) "
           f"THEN 1 ELSE 0 END FROM {RUN} r LEFT JOIN {BUDGET} b ON b.run_id = r.id "
           f"WHERE r.id = %s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [run_id])
        row = cursor.fetchone()
    if row is None:
        return None
    status, version_id, spent = row
    run = _partial(Run, id=run_id, status=status, version_id=version_id)
    return Head(run=run, budget_spent=bool(spent))


@cache
def _now() -> str:
    """The database clock, as Django's ``Now()`` writes it on this backend."""
    if connection.vendor == "sqlite":
        return "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'NOW')"
    return "STATEMENT_TIMESTAMP()"


def claim(run_id: str, key: str, owner: Owner, predecessors: list[str]) -> StepRun | None:
    """Claim a pending step (the fencing attempt + 1) and mark what sent it as continued.

    Returns the claimed step, or None when the row was not pending.
    """
    now = _now()
    sql = (f"UPDATE {STEP} SET status = 'running', attempt = attempt + 1, owner_host = %s, "
           f"owner_pid = %s, owner_started = %s, started_at = {now}, heartbeat_at = {now}, "
           f"finished_at = NULL WHERE run_id = %s AND key = %s AND status = 'pending' "
           f"RETURNING id, attempt, lost")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [owner.host, owner.pid, owner.started, run_id, key])
        row = cursor.fetchone()
        if row is None:
            return None
        if predecessors:
            marks = ", ".join(["%s"] * len(predecessors))
            cursor.execute(f"UPDATE {STEP} SET continued = TRUE WHERE run_id = %s AND "
                           f"key IN ({marks}) AND continued = FALSE", [run_id, *predecessors])
    step_id, attempt, lost = row
    return _partial(StepRun, id=step_id, run_id=run_id, key=key, status=StepRun.Status.RUNNING,
                    attempt=attempt, lost=lost)


def read_checkpoint(run_id: str, key: str, item: int | None = None) -> tuple[Any, Any]:
    """(output, context) of a row; with ``item``, only that element of its output list."""
    output = "output" if item is None else "output -> %s"
    params: list[Any] = [run_id, key] if item is None else [item, run_id, key]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {output}, context FROM {STEP} WHERE run_id = %s AND key = %s",
                       params)
        row = cursor.fetchone()
    if row is None:
        raise StepRun.DoesNotExist(f"run {run_id} has no step {key}")
    return _load(row[0]), _load(row[1])


def write_checkpoint(step: StepRun, *, output: Any, context: Any, duration_ms: float | None,
                     cache_hit: bool) -> bool:
    """Mark the step succeeded with its result if this attempt still holds the claim."""
    sql = (f"UPDATE {STEP} SET status = 'succeeded', output = %s, context = %s, "
           f"finished_at = {_now()}, duration_ms = %s, cache_hit = %s, error = NULL "
           f"WHERE id = %s AND attempt = %s AND status = 'running'")
    with connection.cursor() as cursor:
        cursor.execute(sql, [_dump(output), _dump(context), duration_ms, cache_hit, step.id,
                             step.attempt])
        return cursor.rowcount == 1


def arrive(run_id: str, fork_key: str) -> int:
    """Count one branch of a fork as arrived; returns how many are still open.

    The row lock serialises arrivals, so exactly one branch sees 0.
    """
    sql = (f"UPDATE {STEP} SET branches_open = branches_open - 1 WHERE run_id = %s AND "
           f"key = %s RETURNING branches_open")
    with connection.cursor() as cursor:
        cursor.execute(sql, [run_id, fork_key])
        row = cursor.fetchone()
    return 0 if row is None or row[0] is None else row[0]


def release(run_id: str, fork_key: str) -> int | None:
    """Take the next unsent branch of a fork with max_concurrency: its place, or None."""
    sql = (f"UPDATE {STEP} SET branches_sent = branches_sent + 1 WHERE run_id = %s AND "
           f"key = %s AND branches_sent < branches RETURNING branches_sent")
    with connection.cursor() as cursor:
        cursor.execute(sql, [run_id, fork_key])
        row = cursor.fetchone()
    return None if row is None else row[0] - 1


def _partial(model: type, **values: Any) -> Any:
    """A model instance with these fields loaded; the others load on first access."""
    names = [f.attname for f in model._meta.concrete_fields if f.attname in values]
    return model.from_db(connection.alias, names, [values[n] for n in names])


def _dump(value: Any) -> Any:
    return _JSON.get_db_prep_save(value, connection)


def _load(value: Any) -> Any:
    return None if value is None else _JSON.from_db_value(value, None, connection)
