"""The no-code database: tables a person defines, columns, and rows of JSON (DESIGN.md).

A row's ``data`` is keyed by each column's immutable ``key`` (``c`` + 8 hex digits), never
by its name, so renaming a column touches one row of ``Column`` and no data. A missing
key and a null value are the same thing: nulls are never stored, so unique indexes ignore
them (both databases treat SQL NULLs as distinct).
"""

from __future__ import annotations

import uuid

from django.core.validators import RegexValidator
from django.db import models

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
name_validator = RegexValidator(
    NAME_PATTERN, "Use letters, digits and underscores, starting with a letter or underscore "
    "(at most 63 characters).")


def new_column_key() -> str:
    return "c" + uuid.uuid4().hex[:8]


class Table(models.Model):
    name = models.CharField(max_length=63, unique=True, validators=[name_validator],
                            help_text="How scripts and the API name it, e.g. messages.")
    description = models.TextField(blank=True)
    # A new random value with every change of the table or its columns, in the same
    # transaction, so per-process caches of the columns can tell they are stale. Random,
    # not a counter: a counter repeats after a rolled-back change, and so would a stale
    # cache filled inside it.
    schema_version = models.UUIDField(default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Column(models.Model):
    class Type(models.TextChoices):
        TEXT = "text"
        LONG_TEXT = "long_text", "long text"
        NUMBER = "number"
        INTEGER = "integer"
        BOOLEAN = "boolean"
        DATE = "date"
        DATETIME = "datetime"
        CHOICE = "choice"
        JSON = "json"
        URL = "url"
        EMAIL = "email"

    table = models.ForeignKey(Table, on_delete=models.CASCADE, related_name="columns")
    # The JSON key of this column in every row; never changes, so renames are free.
    key = models.CharField(max_length=20, default=new_column_key, editable=False)
    name = models.CharField(max_length=63, validators=[name_validator],
                            help_text="Field name in scripts, the API and CSV headers.")
    type = models.CharField(max_length=20, choices=Type.choices, default=Type.TEXT)
    options = models.JSONField(default=list, blank=True,
                               help_text="The allowed values of a choice column.")
    required = models.BooleanField(default=False, help_text="Every row must have a value.")
    default = models.JSONField(null=True, blank=True,
                               help_text="Filled in when a row has no value.")
    unique = models.BooleanField(default=False, help_text="No two rows share a value.")
    indexed = models.BooleanField(default=False, help_text="Fast lookups by this column.")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["table", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["table", "name"], name="memory_column_unique_name"),
            models.UniqueConstraint(fields=["table", "key"], name="memory_column_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.table.name}.{self.name}"


class Row(models.Model):
    # (table, id) below serves the foreign key too.
    table = models.ForeignKey(Table, on_delete=models.CASCADE, related_name="rows",
                              db_index=False)
    data = models.JSONField(default=dict, blank=True, help_text="Values by column key.")
    workflow = models.ForeignKey("workflows.Workflow", null=True, blank=True,
                                 on_delete=models.SET_NULL, related_name="memory_rows")
    run = models.ForeignKey("runs.Run", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="memory_rows")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["table", "id"], name="memory_row_table_id")]

    def __str__(self) -> str:
        return f"{self.table.name}#{self.pk}"
