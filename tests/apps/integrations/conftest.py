"""Integrations talk to the fake Slack server and start runs through the REST fixtures."""

from tests.apps.api_fixtures import dispatcher, register, staff  # noqa: F401  (fixtures)
from tests.fakes.fixtures import fake_slack, slack_env  # noqa: F401  (fixtures)
