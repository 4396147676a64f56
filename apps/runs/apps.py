import sqlite3

from django.apps import AppConfig
from django.core import checks

# The step statements (apps/runs/services/steps_sql.py) use RETURNING (3.35) and the
# JSON ``->`` operator (3.38).
SQLITE_MINIMUM = (3, 38)


class RunsConfig(AppConfig):
    name = "apps.runs"
    label = "runs"

    def ready(self) -> None:
        checks.register(sqlite_version_check)


def sqlite_version_check(app_configs=None, databases=None, **kwargs) -> list[checks.CheckMessage]:
    from django.db import connections

    uses_sqlite = any(c.vendor == "sqlite" for c in connections.all(initialized_only=False))
    if not uses_sqlite or sqlite3.sqlite_version_info >= SQLITE_MINIMUM:
        return []
    wanted = ".".join(map(str, SQLITE_MINIMUM))
    return [checks.Error(f"FlowOps needs SQLite {wanted} or newer; this Python has "
                         f"{sqlite3.sqlite_version}",
                         hint="Use a Python built with a newer SQLite, or PostgreSQL.",
                         id="runs.E001")]
