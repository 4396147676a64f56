"""``POST /hooks/webhooks/<slug>/``: read the body, call the service, answer JSON."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse

from apps.integrations.hooks import HookView, read_body
from apps.integrations.webhooks.services import SIGNATURE_HEADER, webhook_receive


class WebhookView(HookView):
    allowed = "POST a signed JSON body"

    def receive(self, request: HttpRequest, slug: str) -> JsonResponse:
        body = read_body(request, content_type="application/json",
                         limit=settings.FLOWOPS_WEBHOOK_MAX_BYTES)
        accepted = webhook_receive(
            slug=slug, body=body, signature=request.headers.get(SIGNATURE_HEADER),
            idempotency_key=request.headers.get("Idempotency-Key"))
        return JsonResponse({"event": accepted.event.id, "duplicate": accepted.duplicate,
                             "runs": [run.id for run in accepted.runs]},
                            status=200 if accepted.duplicate else 202)
