"""What every inbound hook (Slack events and interactions, webhooks) shares: one error
type answered as ``{"message": ...}`` with its status, a POST-only view, and the checks of
a body's size, content type and JSON before anything is stored."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from apps.core.exceptions import ApplicationError


class HookError(ApplicationError):
    """An inbound request refused: ``http_status`` and a message naming why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.http_status = status


def error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"message": message}, status=status)


@method_decorator(csrf_exempt, name="dispatch")  # callers sign their requests instead
class HookView(View):
    """POST only; a ``HookError`` raised by ``receive`` is answered as JSON."""

    http_method_names = ["post"]
    allowed = "POST a signed request"

    def http_method_not_allowed(self, request, *args, **kwargs):
        return error(405, f"{request.method} is not allowed; {self.allowed}")

    def post(self, request: HttpRequest, **kwargs: Any) -> JsonResponse:
        try:
            return self.receive(request, **kwargs)
        except HookError as exc:
            return error(exc.http_status, exc.message)

    def receive(self, request: HttpRequest, **kwargs: Any) -> JsonResponse:
        raise NotImplementedError


def read_body(request: HttpRequest, *, content_type: str, limit: int) -> bytes:
    """The body, refused when over ``limit`` bytes (413) or of another type (415)."""
    if int(request.META.get("CONTENT_LENGTH") or 0) > limit:
        raise HookError(413, f"body is over {limit} bytes")
    if request.content_type != content_type:
        raise HookError(415, f"Content-Type must be {content_type}, not "
                             f"{request.content_type or 'missing'}")
    body = request.body
    if len(body) > limit:
        raise HookError(413, f"body is over {limit} bytes")
    return body


def json_object(body: bytes, what: str = "body") -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HookError(400, f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise HookError(400, f"{what} must be a JSON object, not {type(value).__name__}")
    return value
