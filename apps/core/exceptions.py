"""The one error family services raise; APIs and commands turn it into a clear message."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """A request a service refuses: ``message`` for people, ``extra`` for machines.

    ``http_status`` is what the REST API answers (a subclass for conflicts says 409).
    """

    http_status = 400

    def __init__(self, message: str, extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class Conflict(ApplicationError):
    """The request is well formed but the thing's current state refuses it (approving a
    run that is not paused, reusing an idempotency key with another body)."""

    http_status = 409
