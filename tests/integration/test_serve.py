"""The embedded default on a fresh clone: ``python manage.py serve`` alone registers the
scripts in FLOWOPS_WORKFLOW_DIRS, takes a signed webhook and runs the workflow in the
background, with SQLite and no other server."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from apps.integrations.webhooks.services import signature_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ECHO = '''
from flowops import trigger

name = "echo"


@trigger(integration="webhook")
def run(context):
    return {"got": context.payload}
'''


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def until(probe, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def run_status(db: Path, run_id: str) -> tuple[str, str] | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT status, output FROM runs_run WHERE id = ?",
                           (run_id,)).fetchone()
    return row if row and row[0] in ("succeeded", "failed") else None


@pytest.fixture
def embedded_env(tmp_path) -> dict[str, str]:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "echo.py").write_text(ECHO)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("DATABASE_URL", "REDIS_URL", "CELERY", "FLOWOPS_"))}
    env.update(DJANGO_SETTINGS_MODULE="settings.local", PYTHONPATH=str(REPO),
               FLOWOPS_DB_PATH=str(tmp_path / "flowops.sqlite3"),
               FLOWOPS_WORKFLOW_DIRS=str(flows), FLOWOPS_DRIVER="embedded")
    assert manage(env, "migrate", "--noinput").returncode == 0
    return env


def test_serve_registers_the_scripts_and_runs_a_webhook_in_the_background(embedded_env,
                                                                          free_tcp_port):
    port = free_tcp_port
    server = subprocess.Popen([sys.executable, "manage.py", "serve", f"127.0.0.1:{port}"],
                              cwd=REPO, env=embedded_env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        secret = until(lambda: manage(embedded_env, "webhook_secret", "echo").stdout.strip(),
                       "serve to register echo")
        body = b'{"order": 7}'
        url = f"http://127.0.0.1:{port}/hooks/webhooks/echo/"
        status, answer = until(lambda: _post_when_up(url, body, secret), "serve to listen")

        assert status == 202, answer
        [run_id] = answer["runs"]
        db = Path(embedded_env["FLOWOPS_DB_PATH"])
        status, output = until(lambda: run_status(db, run_id), "the run to end")
        assert (status, json.loads(output)) == ("succeeded", {"got": {"order": 7}})
    finally:
        server.send_signal(signal.SIGINT)
        log, _ = server.communicate(timeout=30)
    assert "registered echo (1 trigger(s))" in log


def _post_when_up(url: str, body: bytes, secret: str):
    headers = {"Content-Type": "application/json",
               "X-FlowOps-Signature": signature_for(secret, body)}
    try:
        return post(url, body, headers)
    except (ConnectionError, urllib.error.URLError):
        return None
