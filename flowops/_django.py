"""Setting Django up lazily for the SDK (the runner, the ``flowops`` command)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

_lock = threading.Lock()
_checked: set[str] = set()  # SQLite files known to be migrated in this process


def ensure_django(db_path: str | Path | None = None) -> None:
    """Configure Django (``settings.local`` unless told otherwise) and migrate SQLite."""
    from django.conf import settings

    with _lock:
        if not settings.configured:
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.local")
            if db_path is not None:
                os.environ["FLOWOPS_DB_PATH"] = str(Path(db_path).expanduser().resolve())
        import django
        from django.apps import apps

        if not apps.ready:
            django.setup()
        _migrate_embedded()


def _migrate_embedded() -> None:
    # The embedded SQLite database is created on first use, so a fresh install just runs.
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    if connection.vendor != "sqlite":
        return
    # Building the migration plan costs milliseconds and queries: once per file will do
    # (every SDK call outside a run comes through here).
    name = str(connection.settings_dict["NAME"])
    if name in _checked:
        return
    executor = MigrationExecutor(connection)
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        call_command("migrate", verbosity=0, interactive=False)
    _checked.add(name)
