"""The OpenAPI schema and docs page, the API's exact paths, and Schemathesis against the
schema: generated requests (valid and invalid) to every operation, the memory tables'
included, through the WSGI app in this process, must never get a server error."""

from __future__ import annotations

import contextlib

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from schemathesis import GenerationMode

from apps.memory import services as memory
from tests.apps.api_fixtures import DOUBLE

# Per operation and generation mode; about 25 s for the whole schema on this machine.
EXAMPLES = 15


# -- the schema and the docs page ---------------------------------------------------------
def test_schema_documents_every_endpoint(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()

    start = schema["paths"]["/api/workflows/{slug}/runs"]["post"]
    assert {p["name"] for p in start["parameters"]} == {"Idempotency-Key", "slug"}
    assert set(start["responses"]) == {"200", "202", "400", "401", "404", "409", "415"}
    listing = schema["paths"]["/api/runs/"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"workflow", "status", "limit",
                                                          "offset"}
    for path, methods in {"/api/workflows/": {"get", "post"}, "/api/workflows/{slug}": {"get"},
                          "/api/runs/{run_id}": {"get"},
                          "/api/runs/{run_id}/resume": {"post"},
                          "/api/runs/{run_id}/cancel": {"post"},
                          "/api/runs/{run_id}/approve": {"post"},
                          "/api/runs/{run_id}/reject": {"post"}}.items():
        assert set(schema["paths"][path]) == methods, path
    assert "403" in schema["paths"]["/api/workflows/"]["post"]["responses"]


def test_docs_page_loads_the_schema(api):
    response = api.get("/api/docs/")
    assert response.status_code == 200
    assert b"/api/schema/" in response.content


# -- exact paths, no redirects ------------------------------------------------------------
def test_the_exact_paths_answer_directly(api, register):
    register(DOUBLE, "double")
    run_id = api.post("/api/workflows/double/runs", {"input": 1}, format="json").json()["id"]
    for method, path, status in [
        ("get", "/api/workflows/", 200), ("get", "/api/workflows/double", 200),
        ("post", "/api/workflows/double/runs", 202), ("get", "/api/runs/", 200),
        ("get", f"/api/runs/{run_id}", 200), ("post", f"/api/runs/{run_id}/approve", 409),
        ("post", f"/api/runs/{run_id}/reject", 409), ("post", f"/api/runs/{run_id}/resume", 200),
        ("post", f"/api/runs/{run_id}/cancel", 200),
    ]:
        body = {"reason": "no"} if path.endswith("/reject") else {} \
            if path.endswith(("/resume", "/approve", "/cancel")) else {"input": 1}
        response = getattr(api, method)(path, body if method == "post" else None,
                                         format="json" if method == "post" else None)
        assert response.status_code == status, (path, response.content)


@pytest.mark.parametrize(("path", "hint"), [
    ("/api/runs", " Did you mean /api/runs/?"),
    ("/api/workflows", " Did you mean /api/workflows/?"),
    ("/api/workflows/double/", " Did you mean /api/workflows/double?"),
    ("/api/workflows/double/runs/", " Did you mean /api/workflows/double/runs?"),
    ("/api/runs/abc/cancel/", " Did you mean /api/runs/abc/cancel?"),
    ("/api/nothing", ""),
])
def test_other_paths_are_a_json_404_not_a_redirect(api, path, hint):
    for response in (api.get(path), api.post(path, {}, format="json")):
        assert response.status_code == 404
        assert response.json() == {"detail": f"No endpoint at {path}.{hint}"}


# -- Schemathesis -------------------------------------------------------------------------
@pytest.fixture
def wsgi_in_test_transaction():
    """Keep the test's connection (and its transaction) across requests to the real WSGI
    app, which closes connections when a request ends; Django's test client does the same."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_headers(staff, register) -> dict[str, str]:
    """A staff token (so the staff-only operations are reached too), and the workflow,
    run and table that the fixed path parameters (``KNOWN``) name."""
    register(DOUBLE, "double")
    memory.table_create(name="plans", columns=[{"name": "name", "type": "text"},
                                               {"name": "age", "type": "integer"}])
    headers = {"Authorization": f"Token {Token.objects.create(user=staff).key}"}
    run = APIClient(HTTP_AUTHORIZATION=headers["Authorization"]).post(
        "/api/workflows/double/runs", {"input": 1}, format="json")
    KNOWN["run_id"] = run.json()["id"]
    return headers


KNOWN = {"slug": "double", "table": "plans", "column": "age"}


def cases(operation, mode: GenerationMode):
    """Random path parameters, and the known ones, so requests get past the lookups."""
    names = {p.name for p in operation.path_parameters}
    known = {name: KNOWN[name] for name in names if name in KNOWN}
    return st.one_of(operation.as_strategy(generation_mode=mode),
                     operation.as_strategy(generation_mode=mode, path_parameters=known))


def test_no_operation_answers_a_server_error(fuzz_headers, wsgi_in_test_transaction):
    # wsgi_in_test_transaction after fuzz_headers: the test client reconnects the signal.
    from settings.wsgi import application

    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application,
                                            headers=fuzz_headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    failures, sent = [], {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            sent[operation.label, mode.value] = 0
            # Unsatisfiable: some operations have nothing a request could get wrong.
            with contextlib.suppress(Unsatisfiable):
                failures += server_errors(operation, mode, fuzz_headers, sent)
    assert failures == []
    assert all(sent[label, "positive"] > 0 for label, _ in sent), sent


def server_errors(operation, mode: GenerationMode, headers: dict[str, str],
                  sent: dict) -> list[str]:
    found: list[str] = []

    @given(case=cases(operation, mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    def check(case) -> None:
        response = case.call(headers=headers)
        sent[operation.label, mode.value] += 1
        if response.status_code >= 500:
            found.append(f"{operation.label} ({mode.value}): {response.status_code} for "
                         f"{case.as_curl_command()}\n{response.text[:500]}")

    check()
    return found


def test_fuzzing_is_authenticated(fuzz_headers):
    # The check above would pass on 401s alone; make sure its token is accepted.
    client = APIClient(HTTP_AUTHORIZATION=fuzz_headers["Authorization"])
    assert client.post("/api/workflows/", {"source": DOUBLE, "slug": "z"},
                       format="json").status_code == 201
