"""Edits that change several things at once, as one PATCH of the REST API asks: each is
one transaction over the single-purpose services, so a refused part undoes the rest."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import IntegrityError, transaction

from apps.memory.models import Column, Table
from apps.memory.services.schema import (
    UNSET,
    column_change_type,
    column_rename,
    column_update,
)
from apps.memory.services.tables import check_name
from apps.memory.validation import MemoryValidationError


@transaction.atomic
def table_update(*, table: Table, name: str | None = None,
                 description: str | None = None) -> Table:
    """Rename a table or change its description. Indexes are named by table id, so a
    rename touches nothing else."""
    if name is not None:
        table.name = check_name(name, "name")
    if description is not None:
        if not isinstance(description, str):
            raise MemoryValidationError({"description": "expected text"})
        table.description = description
    table.schema_version = uuid.uuid4()  # cached columns are found by the table's name
    try:
        with transaction.atomic():
            table.save()
    except IntegrityError:
        raise MemoryValidationError({"name": f"a table named {name!r} exists"}) from None
    return table


@transaction.atomic
def column_edit(*, column: Column, name: Any = UNSET, type: Any = UNSET, options: Any = UNSET,
                required: bool | None = None, default: Any = UNSET,
                unique: bool | None = None, indexed: bool | None = None) -> Column:
    """Change the type (or a choice column's options), the rules, then the name: rules are
    checked against converted values, and errors name the column as the caller knows it."""
    if type is not UNSET or options is not UNSET:
        target = column.type if type is UNSET else type
        kept = column.options if target == Column.Type.CHOICE else None
        column = column_change_type(column=column, type=target,
                                    options=kept if options is UNSET else options)
    if (required, unique, indexed) != (None, None, None) or default is not UNSET:
        column = column_update(column=column, required=required, default=default,
                               unique=unique, indexed=indexed)
    if name is not UNSET and name != column.name:
        column = column_rename(column=column, name=name)
    return column
