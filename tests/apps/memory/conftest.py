"""Fixtures for the memory tables. Most tests run in a rolled-back transaction (``db``);
tests of the database's own guarantees (indexes, concurrent writers) use ``COMMITTING``,
since PostgreSQL builds indexes concurrently, after commit."""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from apps.memory import services
from apps.memory.models import Column, Row, Table
from tests.apps.runs.conftest import make_flow  # noqa: F401 (the fixture, for SDK-in-run tests)

COMMITTING = pytest.mark.django_db(
    transaction=True, available_apps=["apps.core", "apps.workflows", "apps.runs", "apps.memory"])
ONLY_POSTGRES = pytest.mark.skipif(
    "postgresql" not in settings.DATABASES["default"]["ENGINE"], reason="PostgreSQL only")


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process that uses this test's database."""
    db = connection.settings_dict
    env = {**os.environ, **extra}
    if is_postgres():
        env.update(DJANGO_SETTINGS_MODULE="settings.test", DATABASE_URL=(
            f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"))
    else:
        env.update(DJANGO_SETTINGS_MODULE="settings.test_sqlite", FLOWOPS_DB_PATH=db["NAME"])
    return env


@pytest.fixture
def people(db) -> Table:
    """A table with a rule of each kind."""
    return services.table_create(name="people", description="test", columns=[
        {"name": "email", "type": "email", "required": True, "unique": True},
        {"name": "age", "type": "integer", "indexed": True},
        {"name": "score", "type": "number"},
        {"name": "active", "type": "boolean", "default": True},
        {"name": "born", "type": "date"},
        {"name": "seen", "type": "datetime"},
        {"name": "kind", "type": "choice", "options": ["lead", "customer"]},
        {"name": "site", "type": "url"},
        {"name": "bio", "type": "long_text"},
        {"name": "meta", "type": "json"},
    ])


def column(table: Table, name: str) -> Column:
    return Column.objects.get(table=table, name=name)


def rows_of(table: Table) -> list[dict[str, Any]]:
    """Every row of the table as field: value (empty fields left out), by id."""
    columns = list(Column.objects.filter(table=table))
    return [{c.name: r.data[c.key] for c in columns if c.key in r.data}
            for r in Row.objects.filter(table=table).order_by("pk")]
