"""Pytest fixtures for the fake OpenAI server.

Make them available to a test directory by importing them in its ``conftest.py``::

    from tests.fakes.fixtures import fake_openai, fake_openai_process  # noqa: F401

(or, for the whole suite, ``pytest_plugins = ["tests.fakes.fixtures"]`` in the root
``tests/conftest.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.openai_server import (
    FakeOpenAIProcess,
    FakeOpenAIServer,
    start_fake_openai_process,
)
from tests.fakes.slack_server import BOT_TOKEN, FakeSlackServer


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAIServer]:
    """An in-process fake OpenAI server on 127.0.0.1:<free port>, stopped after the test.
    Other processes (e.g. Celery workers) can call its ``base_url`` too while the test runs."""
    server = FakeOpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_openai_process(tmp_path: Path) -> Iterator[FakeOpenAIProcess]:
    """A fake OpenAI server in its own process (``python -m tests.fakes.openai_server``),
    driven over HTTP; its state file is ``tmp_path / "fake_openai.json"``."""
    handle = start_fake_openai_process(tmp_path / "fake_openai.json")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def openai_env(fake_openai, monkeypatch) -> FakeOpenAIServer:
    """The real openai client pointed at the fake server, with quick retries."""
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("FLOWOPS_AI_BACKOFF_S", "0.01")
    monkeypatch.setenv("FLOWOPS_AI_TIMEOUT", "1")
    return fake_openai


SLACK_SIGNING_SECRET = "test-signing-secret"


@pytest.fixture
def fake_slack() -> Iterator[FakeSlackServer]:
    """An in-process fake Slack Web API on 127.0.0.1:<free port>, stopped after the test."""
    server = FakeSlackServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def slack_env(fake_slack, settings, monkeypatch) -> Iterator[FakeSlackServer]:
    """Slack configured at the fake server, in this process's settings and in the
    environment that worker processes inherit; the client's caches start empty."""
    from apps.integrations.slack import client

    values = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": fake_slack.base_url,
              "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET}
    for name, value in values.items():
        setattr(settings, name, value)
        monkeypatch.setenv(name, value)
    client.forget()
    yield fake_slack
    client.forget()
