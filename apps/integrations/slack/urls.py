"""Slack's endpoints under ``/hooks/slack/``."""

from django.urls import path

from apps.integrations.slack.interactions import SlackInteractionsView
from apps.integrations.slack.views import SlackEventsView

urlpatterns: list = [
    path("events", SlackEventsView.as_view(), name="slack-events"),
    path("interactions", SlackInteractionsView.as_view(), name="slack-interactions"),
]
