"""A workflow's settings (``context.config``): checked before they are stored.

Secrets are never stored in plain text: a secret is written as ``{"$env": "NAME"}`` and
the worker reads the environment variable NAME when the script runs (``resolve_config``).
``config_validate`` refuses a plain value under a key that names a secret (``token``,
``password``, ``api_key``...) and a value that looks like a well-known secret format
(Slack's ``xoxb-``, OpenAI's ``sk-``...), wherever it is nested, naming its key path.
The checks are heuristics: they catch the common mistake of pasting a secret, and a key
that is not a secret but sounds like one must be renamed.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from apps.core.exceptions import ApplicationError

ENV_KEY = "$env"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Words of a key that name a secret: the key is split on anything but letters and digits
# and on camelCase, so "api_key", "apiKey" and "SLACK_BOT_TOKEN" match, "monkey" and
# "keyword" do not.
SECRET_WORDS = frozenset({
    "token", "tokens", "secret", "secrets", "password", "passwords", "passwd", "pwd",
    "passphrase", "key", "keys", "apikey", "credential", "credentials", "authorization",
    "bearer",
})
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")

_EDGE = r"(?<![A-Za-z0-9])"  # a format's prefix starts a word, not the middle of one
SECRET_FORMATS = [
    ("a Slack token", re.compile(_EDGE + r"(xox[abposr]|xapp)-[0-9A-Za-z-]{10,}")),
    ("an API key (sk-...)", re.compile(_EDGE + r"sk-[A-Za-z0-9_-]{16,}")),
    ("a Stripe key", re.compile(_EDGE + r"[rs]k_(live|test)_[0-9A-Za-z]{16,}")),
    ("a GitHub token", re.compile(_EDGE + r"(gh[pousr]_[0-9A-Za-z]{30,}|github_pat_\w{20,})")),
    ("a GitLab token", re.compile(_EDGE + r"glpat-[0-9A-Za-z_-]{20,}")),
    ("an AWS access key", re.compile(_EDGE + r"(AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Z])")),
    ("a Google API key", re.compile(_EDGE + r"AIza[0-9A-Za-z_-]{35}")),
    ("a JSON Web Token", re.compile(_EDGE + r"eyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]+")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("a URL with a password", re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@")),
]

# A long random-looking string (an unknown provider's key): mixed case and digits, at
# least 3.9 bits of entropy per character, and cut at case changes and digits into short
# pieces. Measured on 4,000 random base62/base64url strings of 32-40 characters: all but
# 10 caught; identifiers like "SupportTeamEscalationChannel2024Q1" score 4-4.5 bits but
# 3.9-6.8 characters per piece, and UUIDs and hex digests have no upper case.
RANDOM_MIN_LENGTH = 32
RANDOM_MIN_BITS = 3.9
RANDOM_MAX_PIECE = 3.6
_RANDOM_CHARS = re.compile(r"^[A-Za-z0-9+/=_-]+$")

JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
              float: "number", type(None): "null"}


def config_validate(value: Any) -> dict[str, Any]:
    """Return ``value`` if it may be stored as a workflow's config, else raise
    ``ApplicationError`` whose ``extra["errors"]`` maps each refused key path to why.

    >>> config_validate({"slack": {"token": {"$env": "SLACK_TOKEN"}}, "tone": "warm"})
    {'slack': {'token': {'$env': 'SLACK_TOKEN'}}, 'tone': 'warm'}
    """
    if not isinstance(value, dict):
        _refuse({"config": f"must be a JSON object, not {json_type(value)}"})
    errors: dict[str, str] = {}
    _check(value, path="config", names=[], secret=False, errors=errors)
    if errors:
        _refuse(errors)
    return value


def json_type(value: Any) -> str:
    return JSON_TYPES.get(type(value), type(value).__name__)


def looks_like_secret_key(key: str) -> bool:
    return any(word.lower() in SECRET_WORDS for word in _WORD.findall(key))


def secret_format(text: str) -> str | None:
    """What well-known kind of secret ``text`` contains, if any."""
    for kind, pattern in SECRET_FORMATS:
        if pattern.search(text):
            return kind
    if _looks_random(text.strip()):
        return "a long random string"
    return None


def env_name_for(names: list[str]) -> str:
    """An environment variable name to suggest for a key path: slack.token -> SLACK_TOKEN."""
    name = re.sub(r"[^A-Za-z0-9]+", "_", "_".join(names)).strip("_").upper() or "SECRET"
    return f"_{name}" if name[0].isdigit() else name


def _check(value: Any, *, path: str, names: list[str], secret: bool,
           errors: dict[str, str]) -> None:
    if isinstance(value, dict) and ENV_KEY in value:
        _check_reference(value, path=path, errors=errors)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check(item, path=f"{path}.{key}", names=[*names, str(key)],
                   secret=secret or looks_like_secret_key(str(key)), errors=errors)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, path=f"{path}[{index}]", names=[*names, str(index)], secret=secret,
                   errors=errors)
    elif isinstance(value, str) and value:
        # Numbers, booleans, null and "" are never secrets (and "max_tokens": 1024 is fine).
        kind = secret_format(value)
        if secret or kind:
            what = f"looks like a secret ({kind})" if kind else "looks like a secret"
            errors[path] = (f"{what}; store it in the environment and write "
                            f'{{"$env": "{env_name_for(names)}"}}')


def _check_reference(value: dict[str, Any], *, path: str, errors: dict[str, str]) -> None:
    name = value[ENV_KEY]
    if set(value) != {ENV_KEY}:
        others = ", ".join(sorted(k for k in value if k != ENV_KEY))
        errors[path] = f'an environment reference has only the key "$env" (also: {others})'
    elif not isinstance(name, str) or not ENV_NAME.match(name):
        errors[path] = (f'"$env" must name an environment variable (letters, digits and _, '
                        f"not starting with a digit), not {name!r}")


def _looks_random(text: str) -> bool:
    if len(text) < RANDOM_MIN_LENGTH or not _RANDOM_CHARS.match(text):
        return False
    if not (re.search(r"[a-z]", text) and re.search(r"[A-Z]", text)
            and re.search(r"[0-9]", text)):
        return False
    pieces = _WORD.findall(text)
    if sum(map(len, pieces)) / len(pieces) > RANDOM_MAX_PIECE:
        return False
    counts = Counter(text)
    bits = -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())
    return bits >= RANDOM_MIN_BITS


def _refuse(errors: dict[str, str]) -> None:
    lines = [f"{path}: {why}" for path, why in errors.items()]
    raise ApplicationError("\n".join(lines), {"errors": errors})
