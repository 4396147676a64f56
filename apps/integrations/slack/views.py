"""``POST /hooks/slack/events``: Slack's Events API. Read, call the service, answer JSON."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse

from apps.integrations.hooks import HookView, read_body
from apps.integrations.slack.services import slack_event_receive
from apps.integrations.slack.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER


class SlackEventsView(HookView):
    allowed = "Slack POSTs its events here"

    def receive(self, request: HttpRequest) -> JsonResponse:
        # The same limit as webhooks: Slack's event payloads are a few kilobytes.
        body = read_body(request, content_type="application/json",
                         limit=settings.FLOWOPS_WEBHOOK_MAX_BYTES)
        received = slack_event_receive(body=body,
                                       timestamp=request.headers.get(TIMESTAMP_HEADER),
                                       signature=request.headers.get(SIGNATURE_HEADER))
        if received.challenge is not None:
            return JsonResponse({"challenge": received.challenge})
        if received.ignored is not None:
            return JsonResponse({"ignored": received.ignored})
        accepted = received.accepted
        # Always 200: Slack counts anything else as a failed delivery and retries it.
        return JsonResponse({"event": accepted.event.id, "duplicate": accepted.duplicate,
                             "runs": [run.id for run in accepted.runs]})
