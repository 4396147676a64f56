"""Shared fixtures. Tests that run workflows use ``transactional_db``: the engine commits
as it goes and its thread pool (and worker processes) need to see those commits."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest


@pytest.fixture
def write_script(tmp_path: Path):
    """Write a workflow script into a temporary directory and return its path."""

    def write(source: str, name: str = "flow.py") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
        return path

    return write


@pytest.fixture(autouse=True)
def _no_background_dispatcher_across_tests():
    """A test that started runs in the background stops their dispatcher when it ends:
    left running, its recovery sweep would take over the stalled runs of later tests."""
    yield
    from workers import embedded

    embedded.stop_background()


@pytest.fixture(scope="session", autouse=True)
def _stop_background_dispatcher(django_db_setup, django_db_blocker):
    """Runs started by events are driven by a dispatcher thread; stop it (and its
    connection) before the test database is dropped."""
    yield
    from workers import embedded

    embedded.stop_background()
