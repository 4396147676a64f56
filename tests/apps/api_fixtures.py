"""Fixtures for the REST API of workflows and runs: users, token clients, registered
workflows, and the background dispatcher that drives the runs the API starts.

Runs started by a request go to the embedded dispatcher thread after commit; a test that
needs them to actually run uses ``dispatcher`` (a real transaction per request) and polls
the database with ``wait_for``. Under the plain ``db`` fixture the test's transaction never
commits, so runs are created and stay pending: enough for validation and idempotency.
"""

from __future__ import annotations

import textwrap
import time

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.runs.models import Run
from apps.workflows.models import Workflow
from apps.workflows.services.registry import workflow_register_source

DOUBLE = '''
from flowops import step


@step
def double(x: int) -> int:
    return x * 2


@step
def describe(x: int) -> str:
    return f"got {x}"


pipeline = double >> describe
'''

REVIEW = '''
from pydantic import BaseModel

from flowops import Step, step


class Review(BaseModel):
    approved: bool
    note: str = ""


@step
def draft(topic: str) -> str:
    return f"A post about {topic}"


@step
def publish(review: Review) -> str:
    return f"{'published' if review.approved else 'shelved'} ({review.note})"


review = Step.human_in_the_loop("review", message_for_user="Check the draft",
                                input_schema=Review)
pipeline = draft >> review >> publish
'''

ECHO_SCRIPT = '''
from flowops import trigger

name = "echo"


@trigger(integration="webhook")
def run(context):
    return {"payload": context.payload, "integration": context.trigger.integration}
'''

# Fails on its first call in this process, succeeds after: a run to resume.
FLAKY = '''
from flowops import step

CALLS = []


@step
def shaky(x: int) -> int:
    CALLS.append(x)
    if len(CALLS) == 1:
        raise RuntimeError("first call fails")
    return x + 1


pipeline = shaky
'''

ENDED = {Run.Status.SUCCEEDED, Run.Status.FAILED, Run.Status.HALTED, Run.Status.CANCELLED,
         Run.Status.PAUSED}


@pytest.fixture
def staff(db) -> User:
    return User.objects.create_user("ada", password="pw", is_staff=True)


@pytest.fixture
def member(db) -> User:
    return User.objects.create_user("bob", password="pw")


def token_client(user: User) -> APIClient:
    token, _ = Token.objects.get_or_create(user=user)
    return APIClient(HTTP_AUTHORIZATION=f"Token {token.key}")


@pytest.fixture
def api(member) -> APIClient:
    return token_client(member)


@pytest.fixture
def admin_api(staff) -> APIClient:
    return token_client(staff)


@pytest.fixture
def register(db, request):
    """Register source as a workflow's active version, unique to this test (so that a
    module-level counter is never shared with another test's identical script)."""

    def register_(source: str, slug: str) -> Workflow:
        marked = f"# test: {request.node.nodeid}\n" + textwrap.dedent(source).lstrip()
        return workflow_register_source(marked, origin=f"<test {slug}>", slug=slug).workflow

    return register_


@pytest.fixture
def dispatcher(transactional_db):
    """Real commits, so the runs the API starts are driven by the dispatcher thread;
    stopped before the database is flushed under it."""
    yield
    from workers import embedded

    embedded.stop_background()
    if embedded.current_dispatcher is not None:
        embedded.current_dispatcher.stop()


def wait_for(run_id: str, statuses=ENDED, timeout: float = 30.0) -> Run:
    """Poll until the run is in one of ``statuses`` (the dispatcher drives it)."""
    deadline = time.monotonic() + timeout
    while True:
        run = Run.objects.get(pk=run_id)
        if run.status in statuses:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} is still {run.status} after {timeout}s")
        time.sleep(0.05)
