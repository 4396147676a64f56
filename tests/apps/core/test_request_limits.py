"""What every machine endpoint (``/api/``, ``/hooks/``) answers before a view reads the
request: oversized bodies and wrong paths get JSON, never an HTML page."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.runs.models import Run
from apps.workflows.models import Event
from tests.apps.api_fixtures import DOUBLE

pytestmark = pytest.mark.django_db


@pytest.fixture
def double(register):
    return register(DOUBLE, "double")


def test_an_oversized_body_is_a_json_413_and_stores_nothing(api, double, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = '{"input": "' + "x" * 2000 + '"}'

    response = api.post("/api/workflows/double/runs", body, content_type="application/json")

    assert response.status_code == 413
    assert response.json() == {"message": "request body is over 1000 bytes"}
    assert not Run.objects.exists() and not Event.objects.exists()


def test_a_content_length_that_is_not_a_number_is_a_json_400(api, double):
    response = api.generic("POST", "/api/workflows/double/runs", "{}",
                           content_type="application/json", CONTENT_LENGTH="lots")

    assert response.status_code == 400
    assert response.json() == {"message": "Content-Length is not a number"}


@pytest.mark.parametrize("path", ["/api/runs", "/hooks/nothing/", "/hooks/webhooks/"])
def test_a_post_to_a_wrong_path_is_a_json_404_even_with_csrf_checks(path):
    response = Client(enforce_csrf_checks=True).post(path, "{}", content_type="application/json")

    assert response.status_code == 404
    assert response.json()["detail"].startswith(f"No endpoint at {path}.")
