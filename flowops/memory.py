"""The no-code DB from steps and scripts: tables people can also see and edit in the admin.

::

    from flowops import memory

    memory.store(table="messages", workflow_id=context.workflow_id,
                 data={"type": intent, "content": text})
    recent = memory.query("messages", where={"type": "question"}, order_by="-id", limit=10)

Every write is validated against the table's columns (``MemoryValidationError.errors``
names each wrong value as ``data.<field>``) and goes through ``apps.memory.services``,
like the admin and the API. Inside a run, writes are journaled effects committed with
their journal entry (CONTRACTS.md §7): a resumed run replays them and never inserts twice;
reads are journaled so a replay sees what the first attempt saw. Outside a run the calls
simply run (against the embedded SQLite database when Django is not set up yet).
"""

from __future__ import annotations

from typing import Any

from flowops._runtime import current_journal

# MemoryValidationError is lazy (see __getattr__).
__all__ = ["MemoryValidationError", "count", "define_table", "delete", "get",  # noqa: F822
           "query", "store", "update"]


def __getattr__(name: str) -> Any:
    # The error class lives with the services, which need Django: import it on demand.
    if name == "MemoryValidationError":
        from apps.memory.validation import MemoryValidationError

        return MemoryValidationError
    raise AttributeError(f"module 'flowops.memory' has no attribute {name!r}")


def store(table: str, data: dict[str, Any], workflow_id: int | str | None = None) -> dict:
    """Insert a row; returns it as ``{"id": ..., field: value}``.

    A table that does not exist yet is created with optional columns inferred from this
    first row; later rows must fit its columns. ``workflow_id``: a Workflow id or slug
    (inside a run, the run's workflow by default).
    """
    return _effect("memory.store", _store, table, data, workflow_id)


def update(table: str, id: int, data: dict[str, Any]) -> dict:
    """Change the fields ``data`` names (``None`` empties one); returns the row."""
    return _effect("memory.update", _update, table, id, data)


def delete(table: str, id: int) -> bool:
    """Delete a row; ``False`` if there was none."""
    return _effect("memory.delete", _delete, table, id)


def define_table(name: str, columns: list[dict[str, Any]] | None = None,
                 description: str = "") -> dict:
    """Create a table, e.g. ``columns=[{"name": "email", "type": "email", "unique": True}]``.

    Calling it again with columns the table already has (same names and types) is fine.
    """
    return _effect("memory.define_table", _define_table, name, columns or [], description)


def query(table: str, where: dict[str, Any] | None = None,
          order_by: str | list[str] | None = None, limit: int | None = None) -> list[dict]:
    """Rows as dicts; ``where={"score": {"gte": 3}, "type": "question"}`` (operators: eq,
    not, lt, lte, gt, gte, contains, in, is_null); ``order_by="-score"`` (rows without a
    score last, in either direction)."""
    return _read("memory.query", _query, table, where, order_by, limit)


def get(table: str, id: int) -> dict | None:
    """One row by id, or ``None``."""
    return _read("memory.get", _get, table, id)


def count(table: str, where: dict[str, Any] | None = None) -> int:
    """How many rows match ``where``."""
    return _read("memory.count", _count, table, where)


# -- the journal -------------------------------------------------------------------------
def _effect(name: str, fn: Any, *args: Any) -> Any:
    journal = current_journal()
    if journal is None:
        return _direct(fn, *args, run_id=None)
    run_id = getattr(journal, "run_id", None)
    return journal.transact(name, lambda *a: fn(*a, run_id=run_id), args, {}, returns=Any)


def _read(name: str, fn: Any, *args: Any) -> Any:
    journal = current_journal()
    if journal is None:
        return _direct(fn, *args)
    from apps.runs.services.journal import orm_call

    # The journal runs a read in the caller's thread; an async step has an event loop
    # there, where the ORM refuses to run, so the query hops to the journal's threads.
    return journal.call(name, lambda *a: orm_call(fn, *a), args, {}, effect=False, returns=Any)


def _direct(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from flowops._django import ensure_django

    ensure_django()
    from apps.runs.services.journal import orm_call

    return orm_call(fn, *args, **kwargs)


# -- the services, run with Django set up ------------------------------------------------
def _store(table: str, data: Any, workflow_id: Any, *, run_id: str | None) -> dict:
    from apps.memory import services

    target = services.table_get_or_infer(name=_name(table), sample=data)
    row = services.row_create(table=target, data=data, run_id=run_id,
                              workflow_id=_workflow(workflow_id, run_id))
    return services.row_to_dict(row, _columns(target))


def _update(table: str, id: Any, data: Any, *, run_id: str | None) -> dict:
    from apps.memory import services

    target = services.table_get(_name(table))
    row = services.row_update(row=_row(target, id), data=data)
    return services.row_to_dict(row, _columns(target))


def _delete(table: str, id: Any, *, run_id: str | None) -> bool:
    from apps.memory import services
    from apps.memory.models import Row

    target = services.table_get(_name(table))
    row = Row.objects.filter(table=target, pk=_id(id)).first()
    if row is None:
        return False
    services.row_delete(row=row)
    return True


def _define_table(name: str, columns: Any, description: str, *, run_id: str | None) -> dict:
    from apps.memory import services
    from apps.memory.models import Table
    from apps.memory.validation import MemoryValidationError

    table = Table.objects.filter(name=name).first()
    if table is None:
        table = services.table_create(name=name, description=description, columns=columns)
    else:
        have = {c.name: c.type for c in _columns(table)}
        differ = [c.get("name") for c in columns if not isinstance(c, dict)
                  or have.get(c.get("name")) != c.get("type", "text")]
        if differ:
            raise MemoryValidationError({"columns": (
                f"table {name!r} exists and its columns differ for: {differ}; change them "
                "in the admin or with the schema services")})
    return {"name": table.name, "description": table.description,
            "columns": [{"name": c.name, "type": c.type, "options": c.options,
                         "required": c.required, "default": c.default, "unique": c.unique,
                         "indexed": c.indexed} for c in _columns(table)]}


def _query(table: str, where: Any, order_by: Any, limit: Any) -> list[dict]:
    from apps.memory import services
    from apps.memory.selectors import row_list, table_columns

    target = services.table_get(_name(table))
    columns, rows = row_list(table=target, where=where, order_by=order_by, limit=limit,
                             columns=table_columns(target))
    return [services.row_to_dict(row, columns) for row in rows]


def _get(table: str, id: Any) -> dict | None:
    from apps.memory import services
    from apps.memory.models import Row
    from apps.memory.selectors import table_columns

    target = services.table_get(_name(table))
    row = Row.objects.filter(table=target, pk=_id(id)).first()
    return services.row_to_dict(row, table_columns(target)) if row is not None else None


def _count(table: str, where: Any) -> int:
    from apps.memory import services
    from apps.memory.selectors import row_filter, table_columns

    target = services.table_get(_name(table))
    return row_filter(table=target, where=where, columns=table_columns(target)).count()


def _columns(table: Any) -> list:
    from apps.memory.services.rows import columns_of

    return columns_of(table)


def _name(table: Any) -> str:
    from apps.memory.services.tables import check_name

    return check_name(table, "table")


def _id(id: Any) -> int:
    from apps.memory.validation import MemoryValidationError

    if isinstance(id, bool) or not isinstance(id, int):
        raise MemoryValidationError({"id": f"expected a row id (an integer), got {id!r}"})
    return id


def _row(table: Any, id: Any) -> Any:
    from apps.memory.models import Row
    from apps.memory.validation import MemoryValidationError

    row = Row.objects.filter(table=table, pk=_id(id)).first()
    if row is None:
        raise MemoryValidationError({"id": f"table {table.name!r} has no row {id}"})
    return row


def _workflow(workflow_id: Any, run_id: str | None) -> int | None:
    """A Workflow id or slug checked to exist; else the current run's workflow."""
    from apps.memory.validation import MemoryValidationError
    from apps.runs.models import Run
    from apps.workflows.models import Workflow

    if workflow_id is None:
        if run_id is None:
            return None
        return Run.objects.filter(pk=run_id).values_list("version__workflow_id",
                                                         flat=True).first()
    if isinstance(workflow_id, int) and not isinstance(workflow_id, bool):
        found = Workflow.objects.filter(pk=workflow_id)
    elif isinstance(workflow_id, str):
        found = Workflow.objects.filter(slug=workflow_id)
    else:
        raise MemoryValidationError({"workflow_id": f"expected a workflow id or slug, got "
                                                    f"{workflow_id!r}"})
    pk = found.values_list("pk", flat=True).first()
    if pk is None:
        raise MemoryValidationError({"workflow_id": f"no workflow {workflow_id!r}"})
    return pk
