"""Fixtures for the integration tests: real ``celery worker`` processes on real Redis and
PostgreSQL (DESIGN.md, Tests; STYLE.md, Tests).

Every test that starts a worker gets a flushed Redis test database, the ``celery`` driver
in this process (so ``run_start`` dispatches canvas to the broker) and workers whose
``DATABASE_URL`` is the test database pytest-django created. Worker logs go to files in
the test's tmp directory; their tails are attached to the report of a failing test.

Tests that leave no work in flight share one worker per module (``worker``); tests that
kill workers or need other settings start their own (``start_worker``).

Side effects are counted in a table that the workflow scripts write to with Django's own
connection (the worker process and the embedded driver in this process both have one
configured for the test database), so a count survives the process that made it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.db import connection

from tests.fakes.fixtures import fake_slack, slack_env  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 1.0  # warm shutdown takes 2-3 s; nothing is left to finish
TAIL_LINES = 120

WORKERS = pytest.StashKey[list]()  # the workers a test used, for its failure report
FAILED = pytest.StashKey[bool]()
_names = itertools.count(1)

# Prepended to every script ``write_flow`` writes: what steps use to leave traces.
PREAMBLE = '''\
import os
import time

from django.db import connection
from pydantic import BaseModel

from flowops import PipelineContext, Step, activity, step


def record(key: str) -> None:
    """Count a side effect in a table (committed at once: steps run in autocommit)."""
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO side_effects (key, pid) VALUES (%s, %s)",
                       [key, os.getpid()])


def flag(name: str):
    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM flow_flags WHERE name = %s", [name])
        row = cursor.fetchone()
    return row[0] if row else None


def seen(key: str) -> int:
    """How many times ``record(key)`` happened so far."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM side_effects WHERE key = %s", [key])
        return cursor.fetchone()[0]


def wait_for_flag(name: str, timeout: float = 60.0) -> None:
    """Block the step until the test sets the flag (no sleeping for a guessed time)."""
    deadline = time.monotonic() + timeout
    while flag(name) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"flag {name} was never set")
        time.sleep(0.05)


'''


# -- reporting ---------------------------------------------------------------------------
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed:
        item.stash[FAILED] = True
        for worker in item.stash.get(WORKERS, []):
            report.sections.append((f"worker {worker.name} log (last {TAIL_LINES} lines)",
                                    worker.tail()))
    return report


# -- database and broker -----------------------------------------------------------------
def database_url() -> str:
    """A postgres:// URL of the database pytest-django created (after the db fixture)."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    user = quote(db.get("USER") or "", safe="")
    password = db.get("PASSWORD") or ""
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{quote(db['NAME'], safe='')}"


@pytest.fixture
def flushed_redis(settings) -> Iterator[str]:
    """Empty the Redis test database so no message of an earlier test is delivered.

    Emptied again afterwards: a test may leave messages no worker took.
    """
    url = settings.REDIS_URL
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
        yield url
        client.flushdb()
    finally:
        client.close()


@pytest.fixture
def celery_driver(settings, transactional_db):
    """This process dispatches runs as Celery canvas (``workers.orchestrator``)."""
    settings.FLOWOPS_DRIVER = "celery"
    return settings


class Effects:
    """The side-effect counter table and the flags table the scripts read."""

    def count(self, key: str) -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM side_effects WHERE key = %s", [key])
            return cursor.fetchone()[0]

    def counts(self, prefix: str = "") -> dict[str, int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT key, count(*) FROM side_effects WHERE key LIKE %s "
                           "GROUP BY key", [prefix.replace("%", r"\%") + "%"])
            return dict(cursor.fetchall())

    def pids(self, key: str) -> list[int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM side_effects WHERE key = %s ORDER BY id", [key])
            return [row[0] for row in cursor.fetchall()]

    def set_flag(self, name: str, value: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO flow_flags (name, value) VALUES (%s, %s) "
                           "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                           [name, value])


@pytest.fixture
def effects(transactional_db) -> Effects:
    """Fresh ``side_effects`` and ``flow_flags`` tables (not Django's: flush leaves them)."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS side_effects (id serial PRIMARY KEY, "
                       "key text NOT NULL, pid int NOT NULL, at timestamptz DEFAULT now())")
        cursor.execute("CREATE TABLE IF NOT EXISTS flow_flags (name text PRIMARY KEY, "
                       "value text NOT NULL)")
        cursor.execute("TRUNCATE side_effects, flow_flags")
    return Effects()


@pytest.fixture
def write_flow(write_script) -> Callable[..., Path]:
    """Write a workflow script with ``record``/``flag`` helpers (see ``PREAMBLE``)."""

    def write(source: str, name: str = "flow.py") -> Path:
        return write_script(PREAMBLE + textwrap.dedent(source).lstrip(), name)

    return write


# -- workers -----------------------------------------------------------------------------
class Worker:
    """One ``celery -A workers worker`` process group."""

    def __init__(self, name: str, log_path: Path, env: dict[str, str], concurrency: int,
                 pool: str = "prefork"):
        self.name = name
        self.log_path = log_path
        self.env = env
        self.concurrency = concurrency
        self.pool = pool
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> Worker:
        command = [str(VENV_BIN / "celery"), "-A", "workers", "worker", "--pool", self.pool,
                   "--concurrency", str(self.concurrency), "-l", "info",
                   "-n", f"{self.name}@%h",
                   # No gossip, mingle or heartbeats: a lone worker needs none, and mingle
                   # alone costs a second at start.
                   "--without-gossip", "--without-mingle", "--without-heartbeat",
                   # A job whose pool process died waits this long for a late result
                   # before WorkerLostError requeues it (default 10 s); several tests
                   # kill pool processes.
                   "--", "worker.lost_wait=1"]
        with self.log_path.open("ab") as log:
            # A session of its own: the process group is the worker and its pool children.
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if re.search(rf"{re.escape(self.name)}@\S+ ready\.", self.log()):
                return
            if self.process.poll() is not None:
                pytest.fail(f"worker {self.name} exited with {self.process.returncode} "
                            f"before it was ready:\n{self.tail()}")
            time.sleep(0.05)
        pytest.fail(f"worker {self.name} not ready after {READY_TIMEOUT_S:g}s:\n{self.tail()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = TAIL_LINES) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_for_log(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            time.sleep(0.05)
        pytest.fail(f"worker {self.name} never logged {text!r} in {timeout:g}s")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children) at once."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL of the process group after a grace time."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # pool children left behind, if any
        if self.process.poll() is None:
            self.process.wait(timeout=10)


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker (or a ``manage.py`` subprocess) on the test services."""
    from django.conf import settings

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLOWOPS_", "CELERY_", "PYTEST_"))}
    env.update({
        "DJANGO_SETTINGS_MODULE": "settings.test",
        "FLOWOPS_DRIVER": "celery",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "FLOWOPS_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),  # this checkout's code, whatever the venv has installed
    })
    env.update(extra or {})
    return env


def _new_worker(directory: Path, *, concurrency: int = 2,
                env: dict[str, str] | None = None, pool: str = "prefork") -> Worker:
    name = f"w{next(_names)}-{os.getpid()}"
    return Worker(name, directory / f"{name}.log", worker_env(env), concurrency, pool)


@pytest.fixture
def start_worker(request, tmp_path, flushed_redis, celery_driver
                 ) -> Iterator[Callable[..., Worker]]:
    """Start a worker of this test: ``start_worker(concurrency=2, env={"FLOWOPS_FAULT": ...})``;
    ``pool="solo"`` runs tasks in the worker's main process (a fault there kills the worker).

    Every worker started here is stopped at teardown, before the database is flushed
    (this fixture depends on ``transactional_db``, so it is torn down first).
    """
    started: list[Worker] = request.node.stash.setdefault(WORKERS, [])

    def start(*, concurrency: int = 2, env: dict[str, str] | None = None,
              pool: str = "prefork") -> Worker:
        worker = _new_worker(tmp_path, concurrency=concurrency, env=env, pool=pool)
        started.append(worker)
        return worker.start()

    yield start
    for worker in reversed(started):
        worker.stop()


class SharedWorker:
    """The default worker of a module, started when a test first needs it."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.worker: Worker | None = None

    def get(self) -> Worker:
        if self.worker is not None and self.worker.process.poll() is not None:
            self.discard()  # it died: the next test gets a new one
        if self.worker is None:
            self.worker = _new_worker(self.directory).start()
        return self.worker

    def discard(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None


@pytest.fixture(scope="module")
def module_worker(django_db_setup, tmp_path_factory) -> Iterator[SharedWorker]:
    """A default worker shared by the tests of one module (it costs ~3 s to start and stop).

    Only for tests that leave no work in flight: each test still starts on a flushed Redis
    database (task messages go through the anonymous exchange, so flushing the bindings
    under a running worker does not break routing). After a failed test, which may have
    left a step blocked, the next test gets a new worker.
    """
    shared = SharedWorker(tmp_path_factory.mktemp("worker"))
    try:
        yield shared
    finally:
        shared.discard()


@pytest.fixture
def worker(request, module_worker, flushed_redis, celery_driver) -> Iterator[Worker]:
    """The module's default worker (prefork, concurrency 2), for this test."""
    worker = module_worker.get()
    request.node.stash.setdefault(WORKERS, []).append(worker)
    yield worker
    if request.node.stash.get(FAILED, False):
        module_worker.discard()
