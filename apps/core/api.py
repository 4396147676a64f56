"""REST plumbing shared by every app's ``apis.py``: the deny-by-default permission, the
staff-for-writes permission, and the one exception handler that turns a service's
``ApplicationError`` into JSON (STYLE.md, "The shape of a feature")."""

from __future__ import annotations

from typing import Any

from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, permissions, serializers

from apps.core.exceptions import ApplicationError


class DenyAll(permissions.BasePermission):
    """The default: an endpoint that forgot to choose a permission answers no one."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return False


class StaffWrites(permissions.BasePermission):
    """Signed-in users read; only staff write (schema changes)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return request.method in permissions.SAFE_METHODS or user.is_staff


def exception_handler(exc: Exception, context: dict[str, Any]) -> Any:
    """``ApplicationError`` -> its ``http_status`` (400 unless it says otherwise) with
    ``{"message", **extra}``; DRF's own validation errors get the same ``errors`` shape."""
    # Imported here: rest_framework.views reads the settings that name this module.
    from rest_framework.response import Response
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, ApplicationError):
        return Response({"message": exc.message, **exc.extra}, status=exc.http_status)
    if isinstance(exc, exceptions.ValidationError | exceptions.ParseError):
        errors = _flatten(exc.detail, "")
        message = "; ".join(f"{field}: {why}" for field, why in errors.items())
        return Response({"message": message, "errors": errors}, status=exc.status_code)
    return drf_exception_handler(exc, context)


def _flatten(detail: Any, field: str) -> dict[str, str]:
    """DRF's nested messages -> one message per field (``columns[1].type``), as the
    services give them; errors about the whole body are under ``body``."""
    if isinstance(detail, dict):
        errors: dict[str, str] = {}
        for name, value in detail.items():
            if name == "non_field_errors":
                errors.update(_flatten(value, field))
            elif isinstance(name, int):  # a ListSerializer's errors are keyed by index
                errors.update(_flatten(value, f"{field}[{name}]"))
            else:
                errors.update(_flatten(value, f"{field}.{name}" if field else str(name)))
        return errors
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return {field or "body": " ".join(str(item) for item in detail)}
        errors = {}
        for index, item in enumerate(detail):
            errors.update(_flatten(item, f"{field}[{index}]"))
        return errors
    return {field or "body": str(detail)}


class StrictSerializer(serializers.Serializer):
    """An input serializer that refuses fields it does not know: a misspelt optional field
    (``budget.usd_limit``) would otherwise be dropped without a word."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                raise exceptions.ValidationError({key: "unknown field" for key in unknown})
        return super().to_internal_value(data)


# -- error documents, for the OpenAPI schema ----------------------------------------------
class ErrorOutputSerializer(serializers.Serializer):
    """What ``exception_handler`` answers for a refused request (400, 409)."""

    message = serializers.CharField()
    errors = serializers.DictField(child=serializers.CharField(), required=False,
                                   help_text="One message per field or parameter, by name.")


class DetailOutputSerializer(serializers.Serializer):
    """DRF's own answer for authentication, permission and lookup errors."""

    detail = serializers.CharField()


ERROR_DESCRIPTIONS = {
    400: "The request is invalid; `errors` names each field or parameter.",
    401: "Not signed in: send `Authorization: Token <key>` (or a session cookie).",
    403: "Signed in, but not allowed (staff only).",
    404: "Not found.",
    409: "The current state refuses it; `message` says why.",
    415: "The body is not JSON.",
}


def errors(*statuses: int) -> dict[int, Any]:
    """OpenAPI responses for these error statuses, with the shapes the handler gives."""
    from drf_spectacular.utils import OpenApiResponse

    return {status: OpenApiResponse(
        response=ErrorOutputSerializer if status in (400, 409) else DetailOutputSerializer,
        description=ERROR_DESCRIPTIONS[status]) for status in statuses}


@csrf_exempt  # a POST to a wrong path gets its JSON 404, not an HTML CSRF failure
def api_not_found(request: Any, path: str = "") -> Any:
    """Any other path under ``/api/`` or ``/hooks/``: a JSON 404, never a redirect.

    Django would answer ``/api/runs`` with a 301 to ``/api/runs/`` (APPEND_SLASH), and a
    client that follows it turns a POST into a GET. The paths are exact instead, so the
    answer names the path that exists.
    """
    from django.http import JsonResponse
    from django.urls import Resolver404, resolve

    other = request.path[:-1] if request.path.endswith("/") else request.path + "/"
    detail = f"No endpoint at {request.path}."
    try:
        if resolve(other).url_name not in ("api-not-found", "hooks-not-found"):
            detail += f" Did you mean {other}?"
    except Resolver404:
        pass
    return JsonResponse({"detail": detail}, status=404)
