"""Fixtures of the REST API tests of workflows and runs (see ``api_fixtures``)."""

from tests.apps.api_fixtures import (  # noqa: F401  (fixtures)
    admin_api,
    api,
    dispatcher,
    member,
    register,
    staff,
)
