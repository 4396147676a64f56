"""Slack's endpoints under ``/hooks/slack/``."""

from django.urls import path

from apps.integrations.slack.interactions import SlackInteractionsView

urlpatterns: list = [
    path("interactions", SlackInteractionsView.as_view(), name="slack-interactions"),
]
