"""Limits that hold before any view reads a request."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

MACHINE_PREFIXES = ("/api/", "/hooks/")


class BodyLimitMiddleware:
    """A JSON 413 for a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` on the API and hooks.

    Django refuses such a body (by its Content-Length, as here) only when a view reads
    it, with an HTML 400 that a client cannot tell from a validation error.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and request.path.startswith(MACHINE_PREFIXES):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return JsonResponse({"message": "Content-Length is not a number"}, status=400)
            if length > limit:
                return too_large(limit)
        return self.get_response(request)


def too_large(limit: int) -> JsonResponse:
    return JsonResponse({"message": f"request body is over {limit} bytes"}, status=413)
