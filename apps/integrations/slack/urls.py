"""slack endpoints (under construction)."""

from django.urls import path

from apps.integrations.slack.views import SlackEventsView

urlpatterns: list = [
    path("events", SlackEventsView.as_view(), name="slack-events"),
]
