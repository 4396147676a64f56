"""``POST /hooks/slack/events``: Slack's Events API. Parse, call the service, answer JSON."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from apps.integrations.slack.services import slack_event_receive
from apps.integrations.slack.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SlackRequestError,
)


def error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"message": message}, status=status)


@method_decorator(csrf_exempt, name="dispatch")
class SlackEventsView(View):
    http_method_names = ["post"]

    def http_method_not_allowed(self, request, *args, **kwargs):
        return error(405, f"{request.method} is not allowed; Slack POSTs its events here")

    def post(self, request: HttpRequest) -> JsonResponse:
        # The same limit as webhooks: Slack's event payloads are a few kilobytes.
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
            received = slack_event_receive(body=body,
                                           timestamp=request.headers.get(TIMESTAMP_HEADER),
                                           signature=request.headers.get(SIGNATURE_HEADER))
        except SlackRequestError as exc:
            return error(exc.http_status, exc.message)
        if received.challenge is not None:
            return JsonResponse({"challenge": received.challenge})
        if received.ignored is not None:
            return JsonResponse({"ignored": received.ignored})
        accepted = received.accepted
        # Always 200: Slack counts anything else as a failed delivery and retries it.
        return JsonResponse({"event": accepted.event.id, "duplicate": accepted.duplicate,
                             "runs": [run.id for run in accepted.runs]})
