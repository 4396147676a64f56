"""config_validate: a workflow's settings hold secrets only as environment references."""

from __future__ import annotations

import pytest

from apps.core.exceptions import ApplicationError
from apps.workflows.services.config import config_validate, env_name_for, looks_like_secret_key
from apps.workflows.services.scripts import resolve_config


def refusals(value) -> dict[str, str]:
    with pytest.raises(ApplicationError) as refused:
        config_validate(value)
    return refused.value.extra["errors"]


@pytest.mark.parametrize("config", [
    {},
    {"tone": "warm", "channels": ["#support", "C0123"], "max_tokens": 1024, "debug": False},
    {"slack": {"token": {"$env": "SLACK_TOKEN"}}, "openai_api_key": {"$env": "OPENAI_KEY"}},
    {"password": "", "secret": None, "token_limit": 5000},
    {"bots": [{"name": "helper", "token": {"$env": "BOT_1"}}]},
    {"model": "gpt-4o-mini-2024-07-18", "id": "bebe4454-e50d-4d5c-b282-6aadcb51e2b5",
     "sha": "06ef12ba7187a2f08d268941eccc27437087b9dcf5020837df5d34b9af0d8268",
     "queue": "SupportTeamEscalationChannel2024Q1", "url": "https://example.com/a/b?c=d"},
])
def test_settings_without_plain_secrets_are_accepted_as_they_are(config):
    assert config_validate(config) == config


def test_a_secret_under_a_secret_key_is_refused_naming_the_key_path():
    assert refusals({"slack": {"token": "abc123"}}) == {
        "config.slack.token": 'looks like a secret; store it in the environment and write '
                              '{"$env": "SLACK_TOKEN"}'}


@pytest.mark.parametrize("key", ["token", "api_key", "apiKey", "SLACK_BOT_TOKEN", "password",
                                 "client_secret", "signingSecret", "credentials", "key",
                                 "passwd", "private_key"])
def test_keys_that_name_a_secret_are_recognised(key):
    assert looks_like_secret_key(key)


@pytest.mark.parametrize("key", ["monkey", "keyword", "tone", "channel", "turkey",
                                 "description"])
def test_ordinary_keys_are_not_secret_keys(key):
    assert not looks_like_secret_key(key)


def test_everything_inside_a_secret_key_is_secret_including_lists():
    assert refusals({"credentials": {"user": "bob"}, "keys": ["k1"]}) == {
        "config.credentials.user": 'looks like a secret; store it in the environment and '
                                   'write {"$env": "CREDENTIALS_USER"}',
        "config.keys[0]": 'looks like a secret; store it in the environment and write '
                          '{"$env": "KEYS_0"}'}


@pytest.mark.parametrize(("value", "kind"), [
    ("xoxb-1234567890-0987654321-AbCdEfGhIjKl", "a Slack token"),
    ("xoxp-1234567890-abcdefghij", "a Slack token"),
    ("sk-proj-AbCdEfGhIjKlMnOpQrStUv", "an API key (sk-...)"),
    ("Bearer sk-ant-api03-AbCdEfGhIjKlMnOp", "an API key (sk-...)"),
    ("ghp_" + "a1B2" * 9, "a GitHub token"),
    ("AKIAIOSFODNN7EXAMPLE", "an AWS access key"),
    ("postgres://app:hunter2@db.internal:5432/app", "a URL with a password"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIE...", "a private key"),
    ("q8Zt3vK0pLm2Xw9RbN4yHc7JdF1gT6sA", "a long random string"),
])
def test_values_in_well_known_secret_formats_are_refused_under_any_key(value, kind):
    assert refusals({"notes": {"greeting": value}}) == {
        "config.notes.greeting": f"looks like a secret ({kind}); store it in the environment "
                                 'and write {"$env": "NOTES_GREETING"}'}


def test_every_refusal_is_reported_at_once():
    errors = refusals({"a": {"password": "x"}, "b": [{"token": "y"}], "ok": 1})
    assert list(errors) == ["config.a.password", "config.b[0].token"]


@pytest.mark.parametrize(("value", "why"), [
    ([1, 2], "must be a JSON object, not array"),
    ("text", "must be a JSON object, not string"),
    (None, "must be a JSON object, not null"),
])
def test_config_must_be_a_json_object(value, why):
    assert refusals(value) == {"config": why}


@pytest.mark.parametrize(("reference", "why"), [
    ({"$env": "1TOKEN"}, '"$env" must name an environment variable (letters, digits and _, '
                         "not starting with a digit), not '1TOKEN'"),
    ({"$env": "MY-TOKEN"}, '"$env" must name an environment variable (letters, digits and _, '
                           "not starting with a digit), not 'MY-TOKEN'"),
    ({"$env": 7}, '"$env" must name an environment variable (letters, digits and _, '
                  "not starting with a digit), not 7"),
    ({"$env": "TOKEN", "fallback": "x"}, 'an environment reference has only the key "$env" '
                                         "(also: fallback)"),
])
def test_a_malformed_environment_reference_is_refused(reference, why):
    assert refusals({"slack": {"token": reference}}) == {"config.slack.token": why}


def test_the_message_lists_each_refusal_with_its_path():
    with pytest.raises(ApplicationError) as refused:
        config_validate({"token": "x", "db": "mysql://u:p@h/d"})
    assert refused.value.message.splitlines() == [
        'config.token: looks like a secret; store it in the environment and write '
        '{"$env": "TOKEN"}',
        'config.db: looks like a secret (a URL with a password); store it in the environment '
        'and write {"$env": "DB"}']


def test_suggested_names_are_environment_variable_names():
    assert env_name_for(["slack", "bot-token"]) == "SLACK_BOT_TOKEN"
    assert env_name_for(["0", "key"]) == "_0_KEY"


def test_an_accepted_reference_resolves_on_the_worker(monkeypatch):
    config = config_validate({"slack": {"token": {"$env": "SLACK_TOKEN"}}})
    monkeypatch.setenv("SLACK_TOKEN", "xoxb-from-the-environment")

    assert resolve_config(config) == {"slack": {"token": "xoxb-from-the-environment"}}
