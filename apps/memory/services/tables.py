from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from apps.memory.indexes import schedule_index_sync
from apps.memory.models import Column, Table, name_validator
from apps.memory.validation import MemoryValidationError

COLUMN_FIELDS = {"name", "type", "options", "required", "default", "unique", "indexed"}


def table_get(name: str) -> Table:
    table = Table.objects.filter(name=name).first() if isinstance(name, str) else None
    if table is None:
        raise MemoryValidationError({"table": f"no table named {name!r}"})
    return table


def schema_changed(table_id: int) -> None:
    """A new ``schema_version`` for the table, in the caller's transaction (every schema
    change calls it): caches of its columns in every process see it and read them again."""
    Table.objects.filter(pk=table_id).update(schema_version=uuid.uuid4())


def check_name(name: Any, field: str) -> str:
    try:
        if not isinstance(name, str):
            raise ValidationError("expected text")
        name_validator(name)
    except ValidationError as exc:
        raise MemoryValidationError({field: f"{name!r}: {' '.join(exc.messages)}"}) from None
    return name


@transaction.atomic
def table_create(*, name: str, description: str = "",
                 columns: list[dict[str, Any]] | None = None) -> Table:
    """A table and its columns (each a dict of ``column_add``'s arguments), all or nothing."""
    from apps.memory.services.schema import column_add

    check_name(name, "name")
    try:
        with transaction.atomic():
            table = Table.objects.create(name=name, description=description)
    except IntegrityError:
        raise MemoryValidationError({"name": f"a table named {name!r} exists"}) from None
    for index, spec in enumerate(columns or []):
        where = f"columns[{index}]"
        if not isinstance(spec, dict) or "name" not in spec or set(spec) - COLUMN_FIELDS:
            raise MemoryValidationError({where: (
                f"expected a dict with 'name' and some of {', '.join(sorted(COLUMN_FIELDS))}; "
                f"got {spec!r}")})
        try:
            column_add(table=table, **spec)
        except MemoryValidationError as exc:
            # column_add names the part of one column; say which column of the list.
            raise MemoryValidationError({f"{where}.{k}": v for k, v in exc.errors.items()}
                                        ) from exc
    return table


@transaction.atomic
def table_delete(*, table: Table) -> None:
    table_id = table.id
    table.delete()
    schedule_index_sync(table_id)


def infer_type(value: Any) -> str:
    """A column type for a first value: bool before int (a bool is an int in Python)."""
    if isinstance(value, bool):
        return Column.Type.BOOLEAN
    if isinstance(value, int | float):
        return Column.Type.NUMBER
    if isinstance(value, dict | list):
        return Column.Type.JSON
    return Column.Type.TEXT


def table_get_or_infer(*, name: str, sample: Any) -> Table:
    """The table named ``name``; if there is none, one with optional columns inferred
    from ``sample`` (the first row), so ``memory.store`` works on a fresh install."""
    table = Table.objects.filter(name=name).first()
    if table is not None:
        return table
    if not isinstance(sample, dict):
        raise MemoryValidationError({"data": "expected a dict of field: value"})
    columns = [{"name": field, "type": infer_type(value)} for field, value in sample.items()]
    try:
        with transaction.atomic():
            return table_create(name=name, description="Created by memory.store.",
                                columns=columns)
    except MemoryValidationError as exc:
        if "name" in exc.errors and Table.objects.filter(name=name).exists():
            return Table.objects.get(name=name)  # a concurrent first store made it
        raise
