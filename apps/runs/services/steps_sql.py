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

from django.conf import settings
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


# A limit is reached: no call could fit (the ORM re-checks before halting a run).
_SPENT = ("((b.limit_usd IS NOT NULL AND b.spent_usd >= b.limit_usd) OR "
          "(b.limit_tokens IS NOT NULL AND b.spent_tokens >= b.limit_tokens))")


# One branch of a fork arrives: its join row counts it.
_ARRIVE = f"UPDATE {STEP} SET branches_open = branches_open - 1 WHERE run_id = %s AND key = %s"


def read_head(run_id: str) -> Head | None:
    sql = (f"SELECT r.status, r.version_id, CASE WHEN {_SPENT} THEN 1 ELSE 0 END "
           f"FROM {RUN} r LEFT JOIN {BUDGET} b ON b.run_id = r.id WHERE r.id = %s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [run_id])
        row = cursor.fetchone()
    if row is None:
        return None
    status, version_id, spent = row
    run = partial(Run, id=run_id, status=status, version_id=version_id)
    return Head(run=run, budget_spent=bool(spent))


@cache
def now_sql() -> str:
    """The database clock, as Django's ``Now()`` writes it on this backend."""
    if connection.vendor == "sqlite":
        return "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'NOW')"
    return "STATEMENT_TIMESTAMP()"


def claim(run_id: str, key: str, owner: Owner, predecessors: list[str],
          source: tuple[str, int | None] | None = None) -> tuple[StepRun | None, Any]:
    """Claim a pending step of a running run within its limits whose ``predecessors`` are
    done: the attempt + 1 (the fencing token) and this process as owner, in one statement.

    With ``source`` (the row, and map item, the step's input comes from) the same
    statement returns that (output, context). Returns (the claimed step or None, input).

    On PostgreSQL the claim's commit does not wait for the disk: the checkpoint (or any
    journal entry) after it is synchronous and makes it durable too. Were the claim lost
    in a database crash, the step would be claimed again with the same attempt number,
    so checkpoints and journal entries check the owner process as well.
    """
    now = now_sql()
    sql = (f"UPDATE {STEP} SET status = 'running', attempt = attempt + 1, owner_host = %s, "
           f"owner_pid = %s, owner_started = %s, started_at = {now}, heartbeat_at = {now}, "
           f"finished_at = NULL WHERE run_id = %s AND key = %s AND status = 'pending' "
           f"AND EXISTS (SELECT 1 FROM {RUN} r LEFT JOIN {BUDGET} b ON b.run_id = r.id "
           f"WHERE r.id = %s AND r.status = 'running' AND NOT {_SPENT}) ")
    params: list[Any] = [owner.host, owner.pid, owner.started, run_id, key, run_id]
    if predecessors:
        # Always true when messages follow durable checkpoints; it matters when a
        # database crash lost a checkpoint whose successor's message went out.
        marks = ", ".join(["%s"] * len(predecessors))
        sql += (f"AND NOT EXISTS (SELECT 1 FROM {STEP} p WHERE p.run_id = %s AND p.key IN "
                f"({marks}) AND p.status NOT IN ('succeeded', 'skipped')) ")
        params += [run_id, *predecessors]
    sql += "RETURNING id, attempt, lost"
    if source is not None:
        column = "output" if source[1] is None else "output -> %s"
        sql += "".join(f", (SELECT {c} FROM {STEP} p WHERE p.run_id = %s AND p.key = %s)"
                       for c in (column, "context"))
        item = [] if source[1] is None else [source[1]]
        params += [*item, run_id, source[0], run_id, source[0]]
    postgres = connection.vendor == "postgresql"
    if postgres:
        sql = "SET LOCAL synchronous_commit TO OFF; " + sql
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if postgres:
            cursor.nextset()
        row = cursor.fetchone()
    if row is None:
        return None, None
    step = partial(StepRun, id=row[0], run_id=run_id, key=key, status=StepRun.Status.RUNNING,
                   attempt=row[1], lost=row[2], owner_host=owner.host, owner_pid=owner.pid)
    return step, ((_load(row[3]), _load(row[4])) if source is not None else None)


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
                     cache_hit: bool, fork_key: str | None = None) -> tuple[bool, int | None]:
    """Mark the step succeeded with its result if this attempt still holds the claim.

    With ``fork_key`` (the step ends a branch of that fork) the branch's arrival is
    counted in the same transaction. Returns (written, branches still open).
    """
    sql = (f"UPDATE {STEP} SET status = 'succeeded', output = %s, context = %s, "
           f"finished_at = {now_sql()}, duration_ms = %s, cache_hit = %s, error = NULL "
           f"WHERE id = %s AND attempt = %s AND status = 'running' AND owner_host = %s "
           f"AND owner_pid = %s")
    params = [_dump(output), _dump(context), duration_ms, cache_hit, step.id, step.attempt,
              step.owner_host, step.owner_pid]
    if connection.vendor == "postgresql":
        return _checkpoint_postgres(sql, params, step.run_id, fork_key)
    if fork_key is None:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount == 1, None
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            if cursor.rowcount != 1:
                return False, None
        return True, arrive(step.run_id, fork_key)


def _checkpoint_postgres(checkpoint_sql: str, params: list, run_id: str,
                         fork_key: str | None) -> tuple[bool, int | None]:
    # One statement, so one round trip and one commit (a network database pays for each).
    if fork_key is None:
        sql = (f"WITH done AS ({checkpoint_sql} RETURNING id) "
               f"SELECT (SELECT count(*) FROM done), NULL")
    else:
        sql = (f"WITH done AS ({checkpoint_sql} RETURNING id), arrived AS ("
               f"{_ARRIVE} AND EXISTS (SELECT 1 FROM done) RETURNING branches_open) "
               f"SELECT (SELECT count(*) FROM done), (SELECT branches_open FROM arrived)")
        params = [*params, run_id, fork_key]
    durable = settings.FLOWOPS_DURABLE_CHECKPOINTS
    if not durable:
        sql = "SET LOCAL synchronous_commit TO OFF; " + sql
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if not durable:
            cursor.nextset()
        written, open_ = cursor.fetchone()
    if fork_key is None:
        return written == 1, None
    return written == 1, (0 if open_ is None else open_)


def arrive(run_id: str, fork_key: str) -> int:
    """Count one branch of a fork as arrived; returns how many are still open.

    The row lock serialises arrivals, so exactly one branch sees 0.
    """
    with connection.cursor() as cursor:
        cursor.execute(f"{_ARRIVE} RETURNING branches_open", [run_id, fork_key])
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


def partial(model: type, **values: Any) -> Any:
    """A model instance with these fields loaded; the others load on first access."""
    names = [f.attname for f in model._meta.concrete_fields if f.attname in values]
    return model.from_db(connection.alias, names, [values[n] for n in names])


def _dump(value: Any) -> Any:
    return _JSON.get_db_prep_save(value, connection)


def _load(value: Any) -> Any:
    return None if value is None else _JSON.from_db_value(value, None, connection)
