"""``POST /hooks/webhooks/<slug>/``: parse, call the service, answer JSON."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from apps.integrations.webhooks.services import SIGNATURE_HEADER, WebhookError, webhook_receive


def error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"message": message}, status=status)


@method_decorator(csrf_exempt, name="dispatch")
class WebhookView(View):
    http_method_names = ["post"]

    def http_method_not_allowed(self, request, *args, **kwargs):
        return error(405, f"{request.method} is not allowed; POST a signed JSON body")

    def post(self, request: HttpRequest, slug: str) -> JsonResponse:
        limit = settings.FLOWOPS_WEBHOOK_MAX_BYTES
        if int(request.META.get("CONTENT_LENGTH") or 0) > limit:
            return error(413, f"body is over {limit} bytes")
        if request.content_type != "application/json":
            return error(415, f"Content-Type must be application/json, not "
                              f"{request.content_type or 'missing'}")
        body = request.body
        if len(body) > limit:
            return error(413, f"body is over {limit} bytes")
        try:
            accepted = webhook_receive(
                slug=slug, body=body, signature=request.headers.get(SIGNATURE_HEADER),
                idempotency_key=request.headers.get("Idempotency-Key"))
        except WebhookError as exc:
            return error(exc.http_status, exc.message)
        return JsonResponse({"event": accepted.event.id, "duplicate": accepted.duplicate,
                             "runs": [run.id for run in accepted.runs]},
                            status=200 if accepted.duplicate else 202)
