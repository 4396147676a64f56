"""State back-ends, as in the seed (``flowops.state.SQLiteBackend``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SQLiteBackend:
    """Keep runs in this SQLite file (the embedded database) instead of the default one.

    ``Flujo(pipeline, state_backend=SQLiteBackend(Path("reports.db")))``. It must be chosen
    before FlowOps first touches the database in this process.
    """

    path: Path

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path))
